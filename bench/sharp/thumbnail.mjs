// The sharp reference of `python -m bench images`: every photo in DIR to the renditions the
// stage makes (WebP 320, JPEG 1440 q80, upright by EXIF), THREADS photos at once, REPEAT times.
// Prints {"photos", "seconds", "cpu_seconds"} as the Python children do (warm-up excluded).
//
//   UV_THREADPOOL_SIZE=THREADS node thumbnail.mjs DIR REPEAT THREADS [--keep OUT] [--pipeline P]
//
// sharp runs each pipeline on a libuv pool thread, so the pool must be THREADS wide (Node reads
// UV_THREADPOOL_SIZE when the pool starts: the caller sets it); each pipeline gets
// cores / THREADS libvips threads (sharp.concurrency), as the worker gives each photo.
import { cpus } from "node:os";
import { mkdir, readdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { pathToFileURL } from "node:url";

export const THUMB = 320;
export const PREVIEW = 1440;
export const QUALITY = 80;
export const PIPELINES = ["decode-once", "per-size"];

const USAGE =
  "usage: UV_THREADPOOL_SIZE=THREADS node thumbnail.mjs DIR REPEAT THREADS" +
  ` [--keep OUT] [--pipeline ${PIPELINES.join("|")}]`;

/** The command line, checked: a usage error says what is wrong, never a stack trace. */
export function parseArgs(argv, env) {
  const positional = [];
  const options = { keep: null, pipeline: PIPELINES[0] };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === "--keep" || arg === "--pipeline") {
      const value = argv[++index];
      if (value === undefined) throw new UsageError(`${arg} needs a value`);
      options[arg.slice(2)] = value;
    } else if (arg.startsWith("--")) {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  if (positional.length !== 3) throw new UsageError(`expected 3 arguments, got ${positional.length}`);
  const [dir, repeatText, threadsText] = positional;
  const repeat = wholeNumber("REPEAT", repeatText);
  const threads = wholeNumber("THREADS", threadsText);
  if (!PIPELINES.includes(options.pipeline)) {
    throw new UsageError(`--pipeline must be one of ${PIPELINES.join(", ")}, not ${options.pipeline}`);
  }
  if (env.UV_THREADPOOL_SIZE !== String(threads)) {
    // Fewer pool threads than photos in flight would queue them and time the queue.
    throw new UsageError(
      `UV_THREADPOOL_SIZE must be ${threads} (THREADS), not ${env.UV_THREADPOOL_SIZE ?? "unset"}`,
    );
  }
  return { dir, repeat, threads, ...options };
}

export class UsageError extends Error {}

function wholeNumber(name, text) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) {
    throw new UsageError(`${name} must be a whole number of at least 1, not ${JSON.stringify(text)}`);
  }
  return value;
}

/** One photo to both renditions; returns nothing, writes `<stem>.preview.jpg`, `<stem>.thumb.webp`. */
function renderer(sharp, pipeline) {
  // Same encoder settings as the other methods: no Huffman optimisation (sharp's default is
  // on; the stage and Pillow do not do it), 4:2:0, baseline, metadata dropped.
  const jpeg = { quality: QUALITY, optimiseCoding: false, chromaSubsampling: "4:2:0" };
  const webp = { quality: QUALITY };
  const box = (size) => ({ width: size, height: size, fit: "inside", withoutEnlargement: true, fastShrinkOnLoad: true });
  const open = (path) => sharp(path, { sequentialRead: true, failOn: "error" }).autoOrient();
  if (pipeline === "per-size") {
    // One decode per size, each shrunk on load as far as its own size allows.
    return (path, out) =>
      Promise.all([
        open(path).resize(box(PREVIEW)).jpeg(jpeg).toFile(`${out}.preview.jpg`),
        open(path).resize(box(THUMB)).webp(webp).toFile(`${out}.thumb.webp`),
      ]);
  }
  // One decode, shrunk on load, to the 1440 pixels; the 320 thumbnail from those.
  return async (path, out) => {
    const { data, info } = await open(path).resize(box(PREVIEW)).raw().toBuffer({ resolveWithObject: true });
    const raw = { raw: { width: info.width, height: info.height, channels: info.channels } };
    await Promise.all([
      sharp(data, raw).jpeg(jpeg).toFile(`${out}.preview.jpg`),
      sharp(data, raw).resize(box(THUMB)).webp(webp).toFile(`${out}.thumb.webp`),
    ]);
  };
}

async function inPool(work, width, task) {
  let next = 0;
  const lane = async () => {
    while (next < work.length) await task(work[next++]);
  };
  await Promise.all(Array.from({ length: width }, lane));
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`thumbnail.mjs: ${error.message}\n${USAGE}`);
    process.exit(2);
  }
  const { default: sharp } = await import("sharp"); // after the checks: they need no install
  sharp.cache(false); // no run may reuse an earlier decode of the same file
  sharp.concurrency(Math.max(1, Math.floor(cpus().length / args.threads)));
  const photos = (await readdir(args.dir)).filter((name) => /\.jpe?g$/i.test(name)).sort();
  if (photos.length === 0) {
    console.error(`thumbnail.mjs: no JPEG in ${args.dir}`);
    process.exit(2);
  }
  const render = renderer(sharp, args.pipeline);
  const scratch = args.keep ?? (await mkdtemp(join(tmpdir(), "bench-sharp-")));
  await mkdir(scratch, { recursive: true });
  const target = (name, index) => join(scratch, `${basename(name, extname(name))}${args.keep ? "" : `-${index}`}`);
  try {
    await render(join(args.dir, photos[0]), target(photos[0], "warm")); // warm-up: codec tables
    const work = Array.from({ length: args.repeat }, () => photos).flat();
    const started = process.hrtime.bigint();
    const cpuBefore = process.cpuUsage();
    let index = 0;
    await inPool(work, args.threads, (name) => render(join(args.dir, name), target(name, index++)));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpuBefore);
    console.log(JSON.stringify({ photos: work.length, seconds, cpu_seconds: (cpu.user + cpu.system) / 1e6 }));
  } finally {
    if (!args.keep) await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
