"""Reading and evaluating a template as CloudFormation would: small templates of our own."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from worker.dev.evaluation import Evaluation, Made, Pseudo
from worker.dev.resources import stand_in
from worker.dev.template import (
    TEMPLATE_PATH,
    DependencyCycle,
    ParameterError,
    Template,
    TemplateError,
    UnknownReference,
    UnsupportedFunction,
    load_template,
)

PSEUDO = Pseudo(stack_name="demo", account_id="123456789012", region="eu-west-3")


def evaluate(body: str, **parameters: Any) -> Evaluation:
    template = Template.parse(textwrap.dedent(body), source="test.yaml")
    return Evaluation(template, PSEUDO, parameters, stand_in=stand_in)


def resolved(evaluation: Evaluation, logical_id: str) -> Any:
    resource = evaluation.template.resources[logical_id]
    return evaluation.resolve(dict(resource.properties), f"{logical_id}.Properties")


QUEUES = """
Parameters:
  Timeout: {Type: Number, Default: 30, MinValue: 2, MaxValue: 600}
  Origins: {Type: CommaDelimitedList, Default: "https://a.example,https://b.example"}
  Stage: {Type: String, Default: prod, AllowedValues: [prod, dev]}
  ImageUri: {Type: String}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  IsDev: !Not [!Condition IsProd]
  Either: !Or [!Condition IsProd, !Condition IsDev]
  Both: !And [!Condition IsProd, !Condition IsDev]
Mappings:
  Sizes: {prod: {Retention: 1209600}, dev: {Retention: 3600}}
Resources:
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-dlq"
      MessageRetentionPeriod: !FindInMap [Sizes, !Ref Stage, Retention]
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Join ["-", [!Ref AWS::StackName, jobs, !Select [1, !Split [",", "a,b,c"]]]]
      VisibilityTimeout: !Ref Timeout
      DelaySeconds: !If [IsProd, !Ref AWS::NoValue, 5]
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt Dlq.Arn
        maxReceiveCount: 5
      Literal: !Sub "${!NotAVariable} in ${AWS::Region}/${AWS::Partition}/${AWS::URLSuffix}"
      Named: !Sub
        - "${Dlq.QueueName}:${Suffix}"
        - Suffix: !Select [0, !Ref Origins]
      Zones: !GetAZs ""
      Encoded: !Base64 hi
  Alarm:
    Type: AWS::CloudWatch::Alarm
    Condition: IsDev
    Properties: {Image: !Ref ImageUri}
"""


def test_parameters_pseudo_parameters_and_intrinsics_resolve() -> None:
    evaluation = evaluate(QUEUES)
    assert evaluation.order(["Queue", "Dlq"]) == ["Dlq", "Queue"]
    evaluation.made["Dlq"] = Made(ref="url", attributes={"Arn": "arn:dlq", "QueueName": "demo-dlq"})
    assert resolved(evaluation, "Dlq")["MessageRetentionPeriod"] == 1209600
    props = resolved(evaluation, "Queue")
    assert props["QueueName"] == "demo-jobs-b"
    assert props["VisibilityTimeout"] == "30"  # CloudFormation passes parameters on as text
    assert "DelaySeconds" not in props  # AWS::NoValue removes the property
    assert props["RedrivePolicy"] == {"deadLetterTargetArn": "arn:dlq", "maxReceiveCount": 5}
    assert props["Literal"] == "${NotAVariable} in eu-west-3/aws/amazonaws.com"
    assert props["Named"] == "demo-dlq:https://a.example"
    assert props["Zones"] == ["eu-west-3a", "eu-west-3b", "eu-west-3c"]
    assert props["Encoded"] == "aGk="


def test_overrides_and_conditions() -> None:
    evaluation = evaluate(QUEUES, Timeout=60, Stage="dev", Origins=["https://c.example"])
    evaluation.made["Dlq"] = Made(ref="url", attributes={"Arn": "a", "QueueName": "q"})
    props = resolved(evaluation, "Queue")
    assert props["VisibilityTimeout"] == "60"
    assert props["DelaySeconds"] == 5
    assert props["Named"] == "q:https://c.example"
    assert resolved(evaluation, "Dlq")["MessageRetentionPeriod"] == 3600
    assert [evaluation.condition(c, "test") for c in ("IsDev", "Either", "Both")] == [
        True,
        True,
        False,
    ]
    alarm = evaluation.template.resources["Alarm"]
    assert evaluation.included(alarm)
    assert not evaluate(QUEUES).included(alarm)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"Timeout": 1}, "parameter Timeout: 1 is below its MinValue 2"),
        ({"Timeout": "soon"}, "parameter Timeout: 'soon' is not a number"),
        ({"Stage": "qa"}, "parameter Stage: 'qa' is not one of prod, dev"),
        ({"Region": "x"}, "test.yaml: no parameter named Region"),
    ],
)
def test_a_parameter_value_the_template_refuses_is_named(
    given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ParameterError) as caught:
        evaluate(QUEUES, **given)
    assert message in str(caught.value)


def test_a_parameter_without_a_value_fails_only_where_it_is_needed() -> None:
    evaluation = evaluate(QUEUES, Stage="dev")  # ImageUri has no Default: fine until used
    with pytest.raises(
        ParameterError, match=r"Alarm\.Properties\.Image\.Ref: parameter ImageUri has no"
    ):
        resolved(evaluation, "Alarm")


def test_a_ref_to_nothing_is_named_with_where_it_is() -> None:
    evaluation = evaluate("""
        Resources:
          Queue:
            Type: AWS::SQS::Queue
            Properties: {QueueName: !Ref Nowhere}
    """)
    with pytest.raises(UnknownReference, match=r"Queue\.Properties\.QueueName\.Ref: Nowhere is"):
        evaluation.order(["Queue"])
    with pytest.raises(UnknownReference, match=r"Nowhere is not a resource, parameter or pseudo"):
        resolved(evaluation, "Queue")


def test_a_sub_or_getatt_or_depends_on_naming_nothing_is_refused() -> None:
    for properties, depends in (
        ("{QueueName: !Sub '${Ghost.Arn}-x'}", "[]"),
        ("{QueueName: !GetAtt Ghost.Arn}", "[]"),
        ("{}", "Ghost"),
    ):
        evaluation = evaluate(f"""
            Resources:
              Queue:
                Type: AWS::SQS::Queue
                DependsOn: {depends}
                Properties: {properties}
        """)
        with pytest.raises(UnknownReference, match="Ghost is not a resource"):
            evaluation.order(["Queue"])


def test_a_ref_to_a_resource_its_condition_leaves_out_is_refused() -> None:
    evaluation = evaluate("""
        Conditions:
          Never: !Equals [a, b]
        Resources:
          Optional: {Type: AWS::SQS::Queue, Condition: Never}
          Queue:
            Type: AWS::SQS::Queue
            Properties: {QueueName: !GetAtt Optional.QueueName}
    """)
    with pytest.raises(UnknownReference, match="Optional is left out by its condition"):
        evaluation.order(["Queue"])


def test_a_cycle_is_reported_with_its_members() -> None:
    evaluation = evaluate("""
        Resources:
          A: {Type: AWS::SQS::Queue, Properties: {QueueName: !GetAtt B.QueueName}}
          B: {Type: AWS::SQS::Queue, Properties: {QueueName: !Sub "${C.QueueName}"}}
          C: {Type: AWS::SQS::Queue, DependsOn: A}
    """)
    with pytest.raises(DependencyCycle, match="each needing the next: ") as caught:
        evaluation.order(["A", "B", "C"])
    circle = str(caught.value).split("next: ")[1]
    assert circle in ("A -> B -> C -> A", "B -> C -> A -> B", "C -> A -> B -> C")


def test_conditions_in_a_circle_are_refused() -> None:
    evaluation = evaluate("""
        Conditions:
          P: !Not [!Condition Q]
          Q: !Not [!Condition P]
        Resources:
          A: {Type: AWS::SQS::Queue, Condition: P}
    """)
    with pytest.raises(DependencyCycle, match="P -> Q -> P"):
        evaluation.included(evaluation.template.resources["A"])


def test_an_unsupported_function_in_a_served_resource_says_which_and_where() -> None:
    evaluation = evaluate("""
        Resources:
          Queue:
            Type: AWS::SQS::Queue
            Properties: {KmsMasterKeyId: !ImportValue shared-key}
    """)
    with pytest.raises(UnsupportedFunction) as caught:
        resolved(evaluation, "Queue")
    assert "Queue.Properties.KmsMasterKeyId: Fn::ImportValue cannot be evaluated outside" in str(
        caught.value
    )


def test_cloud_only_resources_answer_with_placeholders() -> None:
    evaluation = evaluate("""
        Resources:
          Cdn: {Type: AWS::CloudFront::Distribution, Properties: {Anything: !ImportValue x}}
          Role: {Type: AWS::IAM::Role}
          Queue:
            Type: AWS::SQS::Queue
            Properties:
              Policy: !Sub "arn:aws:cloudfront::${AWS::AccountId}:distribution/${Cdn}"
              Arn: !GetAtt Cdn.Arn
              Domain: !GetAtt Cdn.DomainName
              Role: !GetAtt Role.Arn
    """)
    assert evaluation.order(["Queue"]) == ["Queue"]
    props = resolved(evaluation, "Queue")
    assert props["Policy"] == "arn:aws:cloudfront::123456789012:distribution/demo-Cdn"
    assert props["Arn"] == "arn:aws:cloudfront::123456789012:distribution/demo-Cdn"
    assert props["Domain"] == "demo-Cdn-domainname"
    assert props["Role"] == "arn:aws:iam::123456789012:role/demo-Role"


def test_a_served_resource_needed_before_it_is_made_is_a_clear_error() -> None:
    evaluation = evaluate("""
        Resources:
          Dlq: {Type: AWS::SQS::Queue}
          Queue: {Type: AWS::SQS::Queue, Properties: {Redrive: !GetAtt Dlq.Arn}}
    """)
    with pytest.raises(TemplateError, match="Dlq is needed before it has been made"):
        resolved(evaluation, "Queue")
    evaluation.made["Dlq"] = Made(ref="url", attributes={"Arn": "arn:dlq"})
    with pytest.raises(UnknownReference, match=r"Dlq \(AWS::SQS::Queue\) has no attribute Nope"):
        evaluation.get_att("Dlq", "Nope", "test")


def test_yaml_tags_and_dates_read_as_cloudformation_reads_them() -> None:
    template = Template.parse(
        "Resources:\n  P:\n    Type: AWS::SQS::QueuePolicy\n    Properties:\n"
        "      PolicyDocument: {Version: 2012-10-17}\n      Queues: [!GetAtt A.B.C]\n"
    )
    properties = template.resources["P"].properties
    assert properties["PolicyDocument"] == {"Version": "2012-10-17"}
    assert properties["Queues"] == [{"Fn::GetAtt": ["A", "B.C"]}]


def test_a_template_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="needs a Resources section"):
        Template.parse("Parameters: {}\n")
    with pytest.raises(TemplateError, match="Transform 'AWS::Serverless-2016-10-31' runs inside"):
        Template.parse("Transform: AWS::Serverless-2016-10-31\nResources: {}\n")
    with pytest.raises(TemplateError, match="is missing: the dev stack provisions from"):
        load_template(tmp_path / "template.yaml")


def test_the_production_template_is_parsed_once_per_process() -> None:
    assert load_template() is load_template(TEMPLATE_PATH)
