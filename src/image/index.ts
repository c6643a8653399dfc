export type { ImageFormat, SniffedType, VerifiedImage } from './types.ts';
export { MIME_BY_FORMAT, sniffImageType } from './sniff.ts';
export { inspectImage, verifyImage } from './verify.ts';
export type { VerifyImageOptions } from './verify.ts';
