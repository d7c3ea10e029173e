/**
 * The live JavaScript heap of this process, measured exactly for the soak's leak check
 * (scripts/soak.ts): a V8 heap snapshot (taken after a full garbage collection, it holds only
 * reachable objects), summing the self sizes of its nodes except compiled code (bytecode, machine
 * code, feedback vectors: the compiler's memory, not the program's). `heapUsed` after a forced GC
 * also counts memory the collector has not handed back: between two samples with the same objects
 * alive (two snapshots a second apart agreed within 100 bytes) it differed by 125–175 KB, which is
 * 1 KiB/call over a few hundred calls. The snapshot is streamed and only its node list is read.
 */
import { getHeapSnapshot } from 'node:v8';

interface SnapshotMeta {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] } };
}

/** Bytes held by reachable objects, compiled code excluded. Takes a second or two on a 30 MB heap. */
export async function liveHeapBytes(): Promise<number> {
  const stream = getHeapSnapshot();
  let head = '';
  let fields = 0;
  let typeAt = -1;
  let sizeAt = -1;
  let codeType = -1;
  /** Position in the node list, the tail of the last chunk (a number may straddle two), the current node's type. */
  let index = 0;
  let carry = '';
  let type = -1;
  let total = 0;
  const take = (numbers: string[]) => {
    for (const n of numbers) {
      const field = index % fields;
      if (field === typeAt) type = Number(n);
      else if (field === sizeAt && type !== codeType) total += Number(n);
      index++;
    }
  };
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    let text = typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    if (fields === 0) {
      head += text;
      const at = head.indexOf('"nodes":[');
      if (at < 0) continue;
      // `{"snapshot":{…}` up to the comma before "nodes" is the metadata object.
      const meta = (JSON.parse(`${head.slice(0, head.lastIndexOf(',', at))}}`) as SnapshotMeta).snapshot.meta;
      fields = meta.node_fields.length;
      typeAt = meta.node_fields.indexOf('type');
      sizeAt = meta.node_fields.indexOf('self_size');
      codeType = meta.node_types[0].indexOf('code');
      if (typeAt < 0 || sizeAt < 0 || codeType < 0) throw new Error('unexpected heap snapshot format');
      text = head.slice(at + '"nodes":['.length);
      head = '';
    }
    // The node list is flat numbers (whitespace around them is fine for Number): its first ']' ends it.
    const end = text.indexOf(']');
    const numbers = (carry + (end < 0 ? text : text.slice(0, end))).split(',');
    carry = end < 0 ? (numbers.pop() ?? '') : '';
    take(numbers);
    if (end >= 0) {
      stream.destroy();
      if (index % fields !== 0) throw new Error('heap snapshot node list cut short');
      return total;
    }
  }
  throw new Error('heap snapshot ended before its node list did');
}
