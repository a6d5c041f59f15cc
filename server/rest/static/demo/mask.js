// The label mask: decode the server's PNG to class ids, and colour it with the model's palette.
//
// The server writes greyscale PNGs, 8-bit (<= 256 classes) or 16-bit (more). A canvas only gives 8 bits
// per channel, so the page inflates the PNG itself (DecompressionStream, in every current browser) and
// reads exact ids at either depth. Without DecompressionStream it falls back to drawing the PNG into a
// canvas and reading the red channel: exact for 8-bit masks; a 16-bit mask is refused there, because
// the canvas would keep only the high byte and show wrong classes.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function chunks(bytes) {
  for (let i = 0; i < SIGNATURE.length; i++) {
    if (bytes[i] !== SIGNATURE[i]) throw new Error("the mask is not a PNG");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = { header: null, data: [] };
  for (let at = 8; at + 8 <= bytes.length; ) {
    const length = view.getUint32(at);
    const tag = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    const payload = bytes.subarray(at + 8, at + 8 + length);
    if (tag === "IHDR") {
      found.header = {
        width: view.getUint32(at + 8),
        height: view.getUint32(at + 12),
        depth: payload[8],
        colorType: payload[9],
        interlace: payload[12],
      };
    } else if (tag === "IDAT") {
      found.data.push(payload);
    } else if (tag === "IEND") {
      break;
    }
    at += 12 + length;
  }
  if (!found.header) throw new Error("the mask PNG has no header");
  return found;
}

async function inflate(parts) {
  const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// Undo the PNG scanline filters in place; returns the rows without their filter bytes.
function unfilter(raw, height, stride, bpp) {
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = out.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? out.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const left = x >= bpp ? row[x - bpp] : 0;
      const upLeft = x >= bpp ? up[x - bpp] : 0;
      const predictor = [0, left, up[x], (left + up[x]) >> 1, paeth(left, up[x], upLeft)][filter];
      if (predictor === undefined) throw new Error(`the mask PNG has an unknown filter ${filter}`);
      row[x] = (src[x] + predictor) & 0xff;
    }
  }
  return out;
}

async function decodeExact(bytes) {
  const { header, data } = chunks(bytes);
  const { width, height, depth, colorType, interlace } = header;
  if (colorType !== 0 || interlace !== 0 || (depth !== 8 && depth !== 16)) {
    throw new Error(`unexpected mask PNG (colour type ${colorType}, ${depth}-bit, interlace ${interlace})`);
  }
  const bpp = depth / 8;
  const rows = unfilter(await inflate(data), height, width * bpp, bpp);
  const ids = new Uint16Array(width * height);
  if (bpp === 1) ids.set(rows);
  else for (let i = 0; i < ids.length; i++) ids[i] = (rows[2 * i] << 8) | rows[2 * i + 1];
  return { width, height, depth, ids };
}

async function decodeWithCanvas(bytes, base64) {
  const { header } = chunks(bytes);
  if (header.depth !== 8) {
    throw new Error("this browser cannot read 16-bit masks (no DecompressionStream); classes are not shown");
  }
  const image = new Image();
  image.src = `data:image/png;base64,${base64}`;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(image, 0, 0);
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const ids = new Uint16Array(canvas.width * canvas.height);
  for (let i = 0; i < ids.length; i++) ids[i] = rgba[4 * i];
  return { width: canvas.width, height: canvas.height, depth: 8, ids };
}

// {width, height, depth, ids: Uint16Array} from the base64 PNG of the JSON answer.
export async function decodeMask(base64) {
  const bytes = base64Bytes(base64);
  if (typeof DecompressionStream === "function") return decodeExact(bytes);
  return decodeWithCanvas(bytes, base64);
}

// [r, g, b] per class id, from the model description's classes.
export function paletteOf(description) {
  const table = new Uint8Array(3 * Math.max(1, description.num_labels));
  for (const c of description.classes) table.set(c.color, 3 * c.id);
  return table;
}

// Paint the coloured mask into ``canvas`` (opaque; the page sets the opacity with CSS). With ``only``
// set, the other classes are left transparent.
export function paintMask(canvas, mask, palette, only = null) {
  canvas.width = mask.width;
  canvas.height = mask.height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(mask.width, mask.height);
  const rgba = image.data;
  const classes = palette.length / 3;
  for (let i = 0; i < mask.ids.length; i++) {
    const id = mask.ids[i];
    if ((only !== null && id !== only) || id >= classes) continue; // transparent
    rgba[4 * i] = palette[3 * id];
    rgba[4 * i + 1] = palette[3 * id + 1];
    rgba[4 * i + 2] = palette[3 * id + 2];
    rgba[4 * i + 3] = 255;
  }
  context.putImageData(image, 0, 0);
}
