// A lock file beside a file that several processes update (the tuned file, the record-untuned file):
// `<path>.lock`, created with O_EXCL and holding the owner's pid. A lock is stale, and broken, when its
// owner is dead or when it is older than STALE_LOCK_MS: every holder keeps it for one read and one write of
// a file of at most a few MiB, and a pid alone can mislead (reused by an unrelated process, or the lock
// comes from another container or host sharing the directory). Written here rather than taken from npm
// because updates of the tuned file by a process that is exiting must lock synchronously, which the
// maintained lock packages do not offer.
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';

/** A lock file older than this is stale whoever holds it. */
export const STALE_LOCK_MS = 30_000;

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function ownerIsGone(lockPath: string): boolean {
  try {
    if (Date.now() - statSync(lockPath).mtimeMs > STALE_LOCK_MS) return true;
    const pid = Number(readFileSync(lockPath, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now, or garbage: stale once old
    process.kill(pid, 0);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ESRCH'; // no such process; ENOENT (just released) retries normally
  }
}

function tryLock(lockPath: string): boolean {
  try {
    const fd = openSync(lockPath, 'wx');
    writeSync(fd, String(process.pid));
    closeSync(fd);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    if (ownerIsGone(lockPath)) {
      try {
        unlinkSync(lockPath);
      } catch {
        // someone else broke it first
      }
    }
    return false;
  }
}

function release(lockPath: string): void {
  try {
    unlinkSync(lockPath);
  } catch {
    // already gone: nothing to release
  }
}

function timeoutError(path: string, timeoutMs: number): Error {
  return new Error(`could not lock ${path} within ${timeoutMs} ms: ${path}.lock is held by another process (delete it if no gemmkit process is running)`);
}

/** Runs fn while holding `<path>.lock` if it can be taken at once (breaking a stale one); else does nothing and returns false. */
export function tryWithFileLockSync(path: string, fn: () => void): boolean {
  const lockPath = `${path}.lock`;
  if (!tryLock(lockPath) && !tryLock(lockPath)) return false; // a second try once a stale lock was broken
  try {
    fn();
  } finally {
    release(lockPath);
  }
  return true;
}

/** Runs fn while holding `<path>.lock`, waiting (blocking) up to timeoutMs for it. */
export function withFileLockSync<T>(path: string, fn: () => T, timeoutMs = 30_000): T {
  const lockPath = `${path}.lock`;
  const deadline = Date.now() + timeoutMs;
  let wait = 2;
  while (!tryLock(lockPath)) {
    if (Date.now() > deadline) throw timeoutError(path, timeoutMs);
    sleepSync(wait);
    wait = Math.min(wait * 2, 50);
  }
  try {
    return fn();
  } finally {
    release(lockPath);
  }
}

/** The async twin: waits without blocking the event loop. */
export async function withFileLock<T>(path: string, fn: () => Promise<T> | T, timeoutMs = 60_000): Promise<T> {
  const lockPath = `${path}.lock`;
  const deadline = Date.now() + timeoutMs;
  let wait = 2;
  while (!tryLock(lockPath)) {
    if (Date.now() > deadline) throw timeoutError(path, timeoutMs);
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 50);
  }
  try {
    return await fn();
  } finally {
    release(lockPath);
  }
}
