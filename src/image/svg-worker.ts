/**
 * Renders one SVG (stdin) to PNG (stdout) and exits; run by svg.ts in a child
 * process so that a renderer stuck in librsvg can be killed. argv[2] is the
 * pixel limit. Errors go to stderr with exit code 1.
 */
import sharp from 'sharp';

const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
try {
  const png = await sharp(Buffer.concat(chunks), { limitInputPixels: Number(process.argv[2]) }).png().toBuffer();
  process.stdout.write(png, () => process.exit(0));
} catch (err) {
  process.stderr.write(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
}
