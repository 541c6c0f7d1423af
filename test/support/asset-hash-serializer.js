// Snapshot serializer: replaces 64-hex asset hashes (which change with any byte of an asset) by a
// fixed marker, so the composed-stack snapshot changes only when the template does.
const HASH = /[0-9a-f]{64}/g;
module.exports = {
  test: (value) => typeof value === 'string' && /[0-9a-f]{64}/.test(value),
  serialize: (value, config, indentation, depth, refs, printer) => printer(value.replace(HASH, '[ASSET-HASH]'), config, indentation, depth, refs),
};
