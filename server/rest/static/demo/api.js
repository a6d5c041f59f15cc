// The server's public REST API, as the page uses it. Paths are relative to /demo/, so the page also
// works behind a reverse proxy that mounts the server under a prefix.

export class ApiError extends Error {
  constructor(status, kind, detail, retryAfter) {
    super(detail || kind || `HTTP ${status}`);
    this.status = status;
    this.kind = kind;
    this.detail = detail;
    this.retryAfter = retryAfter; // seconds, or null
  }

  // A sentence for people: the server's detail, with what to do about it.
  describe() {
    if (this.status === 0) return `Cannot reach the server: ${this.detail}`;
    if (this.status === 503 && this.retryAfter !== null) {
      return `Server busy, retry in ${this.retryAfter} s (${this.detail || this.kind}).`;
    }
    const what = {
      400: "The server could not use this image",
      404: "Not found",
      413: "The image is too large",
      415: "Unsupported file type",
      503: "The server is not ready",
      504: "The server ran out of time",
    }[this.status] || `Server error ${this.status}`;
    return this.detail ? `${what}: ${this.detail}` : `${what}.`;
  }
}

async function request(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { cache: "no-store", ...options });
  } catch (err) {
    throw new ApiError(0, "network", String(err.message || err), null);
  }
  if (response.ok) return response;
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page, say): keep the status line
    body = { error: "http_error", detail: response.statusText };
  }
  const header = response.headers.get("Retry-After");
  const retryAfter = header !== null && /^\d+$/.test(header) ? Number(header) : null;
  throw new ApiError(response.status, body.error, body.detail, retryAfter);
}

const MODELS = "../v1/models";

// The served models: {default, names, states: [{name, state, ...}]} from GET /v1/models.
export async function listModels() {
  const body = await (await request(MODELS)).json();
  const names = body.models.map((m) => m.name);
  return { default: body.default || names[0], names, states: body.models };
}

// The model description: classes with labels and colours, modes, inference size, providers.
export async function describeModel(name) {
  return (await request(`${MODELS}/${encodeURIComponent(name)}`)).json();
}

// POST the image to the model for one output format (docs/outputs.md); the fetch Response.
async function segmentAs(name, blob, mode, format) {
  const query = new URLSearchParams({ format });
  if (mode) query.set("mode", mode);
  // the server sniffs the real format; octet-stream for files the browser has no type for
  const type = blob.type && blob.type.startsWith("image/") ? blob.type : "application/octet-stream";
  return request(`${MODELS}/${encodeURIComponent(name)}/segment?${query}`, {
    method: "POST",
    headers: { "Content-Type": type },
    body: blob,
  });
}

// The JSON result {width, height, classes, mask_png_base64, timings_ms}.
export async function segment(name, blob, mode) {
  return (await segmentAs(name, blob, mode, "json")).json();
}

// Another format's body as a Blob: "confidence" (8-bit PNG), "polygons" (GeoJSON), ...
export async function segmentBlob(name, blob, mode, format) {
  return (await segmentAs(name, blob, mode, format)).blob();
}
