/**
 * The golden capability's front door: what a factory reset uses of the golden medium (probing the
 * golden root, the room check, the systemd units a new root gets); the guest side of golden update
 * that the boot hook runs first; and what multicast cloning (clone/) carries and writes: the golden
 * image (its signed manifest and chunks), the target disk and its writer, the options clone's
 * commands share with golden image write. Nothing else in golden/ is imported from outside the
 * folder.
 */
export { keyOption, targetOf, targetOptions, whole } from './cli-options.js';
export {
  checkManifestShape,
  chunkLength,
  decompressChunk,
  type GoldenManifest,
  imageIdOf,
  loadManifest,
  type SignedManifest,
  sha256Hex,
  verifyGoldenImage,
} from './golden-image.js';
export { describeDisk, type GoldenFacts, probeGoldenRoot, roomCheck, unmountIfMounted } from './probe.js';
export { TargetWriter } from './target-writer.js';
export { isRuntimeTmpfsLine, systemdUnitSteps } from './units.js';
export { answerGoldenUpdate } from './update-guest.js';
export { type CloneTarget, type TargetRequest, resolveCloneTarget, targetFlush } from './write-target.js';
