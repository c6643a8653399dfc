export { createRequestHandler, type HandlerDeps } from './handler.ts';
export { startServer, type RunningServer } from './http-server.ts';
export { buildImagePath, encodeSource, sign, verifySignature, UNSAFE_SIGNATURE } from './signature.ts';
export { parseImagePath, decodeSource } from './image-path.ts';
