// Camera mode: frames from getUserMedia, downscaled and sent as JPEG one at a time. The next frame goes
// only when the answer to the last one has arrived, so the rate is the server's and never more than one
// frame is in flight.
import { ApiError } from "./api.js";

const LONG_SIDE = 640; // frames are downscaled to this long side before they are sent
const FPS_WINDOW = 10; // answers the frames-per-second figure is measured over
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Camera {
  // ``send(blob)`` posts one frame and resolves to the answer; ``show(answer, frame, ms)`` draws it;
  // ``report({fps, frames, width, height})`` after each shown answer; ``fail(error)`` for a failed one.
  static async open(video, handlers) {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
    video.srcObject = stream;
    try {
      await video.play();
    } catch (err) {
      stream.getTracks().forEach((t) => t.stop());
      throw err;
    }
    const camera = new Camera(video, stream, handlers);
    camera.run();
    return camera;
  }

  constructor(video, stream, handlers) {
    this.video = video;
    this.stream = stream;
    this.handlers = handlers;
    this.running = true;
    this.frames = 0;
    this.answered = []; // when the last answers arrived (ms)
  }

  stop() {
    this.running = false;
    this.stream.getTracks().forEach((t) => t.stop());
    this.video.srcObject = null;
  }

  grab() {
    const { videoWidth: w, videoHeight: h } = this.video;
    const scale = Math.min(1, LONG_SIDE / Math.max(w, h));
    const frame = document.createElement("canvas");
    frame.width = Math.round(w * scale);
    frame.height = Math.round(h * scale);
    frame.getContext("2d").drawImage(this.video, 0, 0, frame.width, frame.height);
    return frame;
  }

  async run() {
    const { send, show, report, fail } = this.handlers;
    while (this.running) {
      if (!this.video.videoWidth) {
        await sleep(50); // no picture yet
        continue;
      }
      const frame = this.grab();
      const blob = await new Promise((resolve) => frame.toBlob(resolve, "image/jpeg", 0.85));
      const started = performance.now();
      try {
        const answer = await send(blob);
        if (!this.running) break; // stopped meanwhile: the answer is not shown
        await show(answer, frame, performance.now() - started);
        this.frames += 1;
        this.answered = [...this.answered.slice(1 - FPS_WINDOW), performance.now()];
        const seconds = (this.answered.at(-1) - this.answered[0]) / 1000;
        const fps = this.answered.length > 1 ? (this.answered.length - 1) / seconds : 0;
        report({ fps, frames: this.frames, width: frame.width, height: frame.height });
      } catch (err) {
        if (!this.running) break;
        fail(err);
        // busy: wait as long as the server asks; anything else: a moment, then the next frame
        await sleep(err instanceof ApiError && err.retryAfter !== null ? 1000 * err.retryAfter : 1000);
      }
    }
  }
}
