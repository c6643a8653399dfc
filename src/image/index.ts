export type { ImageFormat, SniffedType, VerifiedImage } from './types.ts';
export { MIME_BY_FORMAT, sniffImageType } from './sniff.ts';
export { verifyImage } from './verify.ts';
export type { VerifyImageOptions } from './verify.ts';
