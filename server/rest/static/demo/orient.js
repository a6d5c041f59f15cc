// EXIF orientation. The server segments a JPEG's stored pixels (it does not apply the EXIF orientation),
// while browsers always show photos upright. The page shows the photo as the browser does and turns the
// mask the same way, so the overlay lines up and hovering still reads the server's mask.

// The orientation tag (1-8) of a JPEG's EXIF block; 1 when there is none (or for other formats).
export async function exifOrientation(blob) {
  const bytes = new Uint8Array(await blob.slice(0, 128 * 1024).arrayBuffer());
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1;
  const view = new DataView(bytes.buffer);
  for (let at = 2; at + 4 <= bytes.length && bytes[at] === 0xff; ) {
    const marker = bytes[at + 1];
    const length = view.getUint16(at + 2);
    if (marker === 0xda) break; // start of scan: no more metadata
    if (marker === 0xe1 && at + 10 + 8 <= bytes.length && view.getUint32(at + 4) === 0x45786966) {
      return tiffOrientation(view, at + 10, Math.min(bytes.length, at + 2 + length));
    }
    at += 2 + length;
  }
  return 1;
}

function tiffOrientation(view, tiff, end) {
  const little = view.getUint16(tiff) === 0x4949; // "II"
  const u16 = (at) => view.getUint16(at, little);
  const ifd = tiff + view.getUint32(tiff + 4, little);
  if (ifd + 2 > end) return 1;
  for (let i = 0, n = u16(ifd); i < n; i++) {
    const entry = ifd + 2 + 12 * i;
    if (entry + 12 > end) break;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// How a width x height mask is shown for an orientation: the shown size, the canvas transform
// [a, b, c, d, e, f] from mask to shown coordinates, and the way back for one shown pixel.
export function orientedView(orientation, width, height) {
  const matrices = {
    1: [1, 0, 0, 1, 0, 0],
    2: [-1, 0, 0, 1, width, 0], // mirrored
    3: [-1, 0, 0, -1, width, height], // turned 180°
    4: [1, 0, 0, -1, 0, height], // flipped
    5: [0, 1, 1, 0, 0, 0], // transposed
    6: [0, 1, -1, 0, height, 0], // turned 90° clockwise
    7: [0, -1, -1, 0, height, width], // transversed
    8: [0, -1, 1, 0, 0, width], // turned 90° anticlockwise
  };
  const matrix = matrices[orientation] || matrices[1];
  const [a, b, c, d, e, f] = matrix;
  const swapped = a === 0;
  return {
    orientation,
    width: swapped ? height : width,
    height: swapped ? width : height,
    matrix,
    // the mask pixel under shown pixel (x, y): the inverse of an orthogonal matrix is its transpose
    toMask(x, y) {
      const u = x + 0.5 - e;
      const v = y + 0.5 - f;
      return [Math.floor(a * u + b * v), Math.floor(c * u + d * v)];
    },
  };
}
