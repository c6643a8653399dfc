export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'avif' | 'tiff';

export interface SniffedType {
  format: ImageFormat;
  /** The media type served to clients, decided from the bytes. */
  mime: string;
}

export interface VerifiedImage extends SniffedType {
  /** Pixel size as stored (before EXIF orientation); for animations, one frame. */
  width: number;
  height: number;
}
