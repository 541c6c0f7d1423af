/**
 * Reads one regular file out of a tar archive (ustar, GNU and pax formats, as written by GNU tar,
 * Python's tarfile and SageMaker's artifact upload). Enough for small reports; not a general tar library.
 */
export function findInTar(tar: Uint8Array, wanted: (name: string) => boolean): Buffer | undefined {
  const buf = Buffer.from(tar.buffer, tar.byteOffset, tar.byteLength);
  let offset = 0;
  let longName: string | undefined;
  while (offset + 512 <= buf.length) {
    const header = buf.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const size = readSize(header.subarray(124, 136));
    const type = String.fromCharCode(header[156] || 0x30);
    const data = buf.subarray(offset + 512, offset + 512 + size);
    if (data.length < size) throw new Error('truncated tar archive');
    if (type === 'x') {
      longName = paxPath(data) ?? longName;
    } else if (type === 'L') {
      longName = cString(data);
    } else {
      const prefix = cString(header.subarray(345, 500));
      const name = longName ?? (prefix ? `${prefix}/${cString(header.subarray(0, 100))}` : cString(header.subarray(0, 100)));
      longName = undefined;
      if ((type === '0' || type === '\0') && wanted(name.replace(/^(\.\/)+/, ''))) return data;
    }
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return undefined;
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.subarray(0, end === -1 ? bytes.length : end).toString('utf8');
}

function readSize(field: Buffer): number {
  if (field[0] & 0x80) {
    // GNU base-256 encoding for sizes over 8 GiB.
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i];
    return n;
  }
  const text = cString(field).trim();
  return text ? parseInt(text, 8) : 0;
}

function paxPath(data: Buffer): string | undefined {
  let path: string | undefined;
  let i = 0;
  while (i < data.length) {
    const space = data.indexOf(0x20, i);
    if (space === -1) break;
    const length = parseInt(data.subarray(i, space).toString('ascii'), 10);
    if (!Number.isFinite(length) || length <= 0) break;
    const record = data.subarray(space + 1, i + length - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') path = record.slice(eq + 1);
    i += length;
  }
  return path;
}
