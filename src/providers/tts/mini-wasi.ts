/**
 * The 13 WASI preview1 calls flite makes (./flite.ts), served from memory: arguments given when a
 * run starts (not when the instance is made, so an instance can be ready before its text is
 * known), one preopened directory `/out` whose files live in a Map, stdout and stderr collected,
 * no stdin. Replaces node:wasi, whose calls (Node 20) can run a garbage collection in the middle of
 * a fast API call and abort the whole process (seen as SIGABRT in `uvwasi_destroy` under load), and
 * saves the temp directory and its file round trip.
 */

const ESUCCESS = 0;
const EBADF = 8;
const EINVAL = 28;
const ENOENT = 44;
const ENOTSUP = 58;
const PREOPEN_FD = 3;
const PREOPEN = '/out';
const FILETYPE_CHARACTER_DEVICE = 2;
const FILETYPE_DIRECTORY = 3;
const FILETYPE_REGULAR_FILE = 4;
const OFLAGS_CREAT = 1;
const OFLAGS_TRUNC = 8;
const ALL_RIGHTS = 0x1fffffffn;

/** Thrown by proc_exit to unwind out of `_start`. */
class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

interface OpenFile {
  name: string;
  pos: number;
}

/** A growable in-memory file. */
class MemFile {
  bytes = new Uint8Array(64 * 1024);
  length = 0;

  write(at: number, src: Uint8Array): void {
    const end = at + src.length;
    if (end > this.bytes.length) {
      const grown = new Uint8Array(Math.max(end, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(src, at);
    this.length = Math.max(this.length, end);
  }
}

export interface WasiRun {
  /** Exit code of `_start`. */
  code: number;
  /** Files written under /out, by name (no leading slash). */
  files: Map<string, Uint8Array>;
  /** What the program wrote to stderr (for error messages). */
  stderr: string;
}

/** An instance of `module` with its own memory-backed WASI, ready to run once. */
export class MiniWasi {
  private args: string[] = [];
  private readonly files = new Map<string, MemFile>();
  private readonly fds = new Map<number, OpenFile>();
  private nextFd = PREOPEN_FD + 1;
  private stderr = '';
  private memory: { buffer: ArrayBuffer } | null = null;
  private readonly start: () => void;
  private used = false;

  constructor(module: object, instantiate: (module: object, imports: object) => { exports: Record<string, unknown> }) {
    const instance = instantiate(module, { wasi_snapshot_preview1: this.imports() });
    this.memory = instance.exports.memory as { buffer: ArrayBuffer };
    this.start = instance.exports._start as () => void;
  }

  /** Runs the program's `main` with `args` (argv[0] included). Once per instance. */
  run(args: readonly string[]): WasiRun {
    if (this.used) throw new Error('a WASI instance runs once');
    this.used = true;
    this.args = [...args];
    let code = 0;
    try {
      this.start();
    } catch (e) {
      if (!(e instanceof Exit)) throw e;
      code = e.code;
    }
    const files = new Map([...this.files].map(([name, f]) => [name, f.bytes.slice(0, f.length)]));
    this.memory = null; // the instance's memory can go as soon as the caller lets go of this object
    return { code, files, stderr: this.stderr };
  }

  private view(): DataView {
    return new DataView(this.memory!.buffer);
  }

  private bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.memory!.buffer, ptr, len);
  }

  private imports(): Record<string, (...a: never[]) => number> {
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    const iovecs = (ptr: number, n: number) => {
      const v = this.view();
      return Array.from({ length: n }, (_, i) => this.bytes(v.getUint32(ptr + i * 8, true), v.getUint32(ptr + i * 8 + 4, true)));
    };
    return {
      args_sizes_get: (argcPtr: number, sizePtr: number) => {
        const v = this.view();
        v.setUint32(argcPtr, this.args.length, true);
        v.setUint32(sizePtr, this.args.reduce((n, a) => n + enc.encode(a).length + 1, 0), true);
        return ESUCCESS;
      },
      args_get: (argvPtr: number, bufPtr: number) => {
        const v = this.view();
        let at = bufPtr;
        this.args.forEach((a, i) => {
          const b = enc.encode(a);
          v.setUint32(argvPtr + i * 4, at, true);
          this.bytes(at, b.length).set(b);
          v.setUint8(at + b.length, 0);
          at += b.length + 1;
        });
        return ESUCCESS;
      },
      clock_time_get: (_id: number, _precision: bigint, timePtr: number) => {
        this.view().setBigUint64(timePtr, BigInt(Date.now()) * 1_000_000n, true);
        return ESUCCESS;
      },
      fd_prestat_get: (fd: number, ptr: number) => {
        if (fd !== PREOPEN_FD) return EBADF;
        const v = this.view();
        v.setUint8(ptr, 0); // a directory
        v.setUint32(ptr + 4, PREOPEN.length, true);
        return ESUCCESS;
      },
      fd_prestat_dir_name: (fd: number, ptr: number, len: number) => {
        if (fd !== PREOPEN_FD) return EBADF;
        this.bytes(ptr, len).set(enc.encode(PREOPEN).subarray(0, len));
        return ESUCCESS;
      },
      fd_fdstat_get: (fd: number, ptr: number) => {
        const type = fd <= 2 ? FILETYPE_CHARACTER_DEVICE : fd === PREOPEN_FD ? FILETYPE_DIRECTORY : this.fds.has(fd) ? FILETYPE_REGULAR_FILE : -1;
        if (type < 0) return EBADF;
        const v = this.view();
        v.setUint8(ptr, type);
        v.setUint16(ptr + 2, 0, true);
        v.setBigUint64(ptr + 8, ALL_RIGHTS, true);
        v.setBigUint64(ptr + 16, ALL_RIGHTS, true);
        return ESUCCESS;
      },
      fd_fdstat_set_flags: () => ESUCCESS,
      path_open: (dirFd: number, _dirFlags: number, pathPtr: number, pathLen: number, oflags: number,
        _base: bigint, _inheriting: bigint, _fdFlags: number, fdPtr: number) => {
        if (dirFd !== PREOPEN_FD) return EBADF;
        const name = dec.decode(this.bytes(pathPtr, pathLen)).replace(/^\.?\/+/, '');
        let file = this.files.get(name);
        if (!file) {
          if (!(oflags & OFLAGS_CREAT)) return ENOENT;
          this.files.set(name, (file = new MemFile()));
        }
        if (oflags & OFLAGS_TRUNC) file.length = 0;
        const fd = this.nextFd++;
        this.fds.set(fd, { name, pos: 0 });
        this.view().setUint32(fdPtr, fd, true);
        return ESUCCESS;
      },
      fd_write: (fd: number, iovsPtr: number, iovsLen: number, writtenPtr: number) => {
        let n = 0;
        const open = this.fds.get(fd);
        if (!open && fd !== 1 && fd !== 2) return EBADF;
        for (const chunk of iovecs(iovsPtr, iovsLen)) {
          if (open) {
            this.files.get(open.name)!.write(open.pos, chunk);
            open.pos += chunk.length;
          } else if (fd === 2 && this.stderr.length < 2000) this.stderr += dec.decode(chunk);
          n += chunk.length;
        }
        this.view().setUint32(writtenPtr, n, true);
        return ESUCCESS;
      },
      fd_read: (fd: number, iovsPtr: number, iovsLen: number, readPtr: number) => {
        let n = 0;
        const open = this.fds.get(fd);
        if (!open && fd !== 0) return EBADF;
        if (open) {
          const file = this.files.get(open.name)!;
          for (const chunk of iovecs(iovsPtr, iovsLen)) {
            const k = Math.max(0, Math.min(chunk.length, file.length - open.pos));
            chunk.set(file.bytes.subarray(open.pos, open.pos + k));
            open.pos += k;
            n += k;
          }
        }
        this.view().setUint32(readPtr, n, true);
        return ESUCCESS;
      },
      fd_seek: (fd: number, offset: bigint, whence: number, newPtr: number) => {
        const open = this.fds.get(fd);
        if (!open) return fd <= 2 ? ENOTSUP : EBADF;
        const base = whence === 0 ? 0 : whence === 1 ? open.pos : whence === 2 ? this.files.get(open.name)!.length : -1;
        const pos = base + Number(offset);
        if (base < 0 || pos < 0) return EINVAL;
        open.pos = pos;
        this.view().setBigUint64(newPtr, BigInt(pos), true);
        return ESUCCESS;
      },
      fd_close: (fd: number) => (this.fds.delete(fd) || fd <= PREOPEN_FD ? ESUCCESS : EBADF),
      proc_exit: (code: number) => {
        throw new Exit(code);
      },
    };
  }
}
