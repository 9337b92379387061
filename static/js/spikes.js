// Decoding of the binary `spikes` frame (DESIGN.md §4): uint32 first step, uint16 neuron count,
// uint16 step count (little-endian), then per step ceil(n/8) bytes of spikes packed with
// numpy.packbits(..., bitorder="little"): unit i is bit (i % 8) of byte i >> 3; E units first.

const HEADER_BYTES = 8;

/** A decoded frame: {firstStep, neurons, steps, rowBytes, bits}; throws on a malformed one. */
export function decodeSpikes(buffer) {
  const bytes = buffer instanceof ArrayBuffer
    ? new Uint8Array(buffer)
    : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  if (bytes.length < HEADER_BYTES) throw new Error("spike frame shorter than its header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const firstStep = view.getUint32(0, true);
  const neurons = view.getUint16(4, true);
  const steps = view.getUint16(6, true);
  const rowBytes = Math.ceil(neurons / 8);
  if (bytes.length < HEADER_BYTES + steps * rowBytes) throw new Error("spike frame truncated");
  return { firstStep, neurons, steps, rowBytes, bits: bytes.subarray(HEADER_BYTES) };
}

/** The units that fired at step index `step` (0-based within the frame), ascending. */
export function firedUnits(frame, step) {
  const units = [];
  const offset = step * frame.rowBytes;
  for (let b = 0; b < frame.rowBytes; b++) {
    for (let byte = frame.bits[offset + b]; byte; byte &= byte - 1) {
      const unit = b * 8 + 31 - Math.clz32(byte & -byte); // the lowest set bit
      if (unit < frame.neurons) units.push(unit);
    }
  }
  return units;
}

/** Fraction of E units (those below `neuronsE`) and of I units that fired, as [e, i]. */
export function rates(units, neurons, neuronsE) {
  const e = units.filter((unit) => unit < neuronsE).length;
  return [e / neuronsE, neurons > neuronsE ? (units.length - e) / (neurons - neuronsE) : 0];
}

/** Default split when the server does not say: the SORN defaults, 300 E to 75 I (4:1). */
export const excitatoryCount = (neurons, knownE) =>
  knownE > 0 && knownE <= neurons ? knownE : Math.round(neurons * 0.8);
