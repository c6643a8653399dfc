/** A one-line progress bar on a terminal; nothing at all when the stream is piped or redirected. */
export interface ProgressBar {
  update(done: number, total: number): void;
  finish(): void;
}

const WIDTH = 30;
const REDRAW_MS = 100;

export function progressBar(label: string, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (!stream.isTTY) return { update() {}, finish() {} };
  let lastDraw = 0;
  let drawn = false;
  const draw = (done: number, total: number) => {
    const share = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(share * WIDTH);
    const bar = `${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}`;
    const count = total > 0 ? `${done}/${total} ${Math.floor(share * 100)}%` : `${done}`;
    stream.write(`\r${label} [${bar}] ${count}`);
    drawn = true;
  };
  return {
    update(done, total) {
      const now = Date.now();
      if (now - lastDraw < REDRAW_MS && done !== total) return;
      lastDraw = now;
      draw(done, total);
    },
    finish() {
      if (drawn) stream.write('\n');
    },
  };
}
