import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { probeImageSource } from '../../src/image/image-source.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { tempDir } from './helpers/context.js';

// Where an image lives, as a reboot can find it again: the file system's UUID (blkid) and the path
// inside it (findmnt's mount point and, for a bind mount, the folder of the file system it shows).

describe('probeImageSource', () => {
  let dir: string;
  let cleanup: () => void;
  let image: string;
  beforeEach(() => {
    ({ dir, cleanup } = tempDir('zshield-imgsrc-'));
    mkdirSync(path.join(dir, 'images'));
    image = path.join(dir, 'images', 'zshield-box-20261129T030000Z.img.zst');
    writeFileSync(image, 'x');
  });
  afterEach(() => cleanup());

  const findmnt = (target: string, source: string, fsroot: string) => ({
    stdout: JSON.stringify({ filesystems: [{ target, source, fsroot }] }),
  });

  it('a plain mount: the path below the mount point', async () => {
    const r = new RecordingRunner()
      .on('findmnt', findmnt(dir, '/dev/mapper/vgroup-lv--data', '/'))
      .on('blkid -s UUID -o value /dev/mapper/vgroup-lv--data', { stdout: 'd1e2-uuid\n' });
    expect(await probeImageSource(r, image)).toEqual({
      fsUuid: 'd1e2-uuid',
      pathInFs: '/images/zshield-box-20261129T030000Z.img.zst',
    });
    expect(r.calls.map((c) => c.argv.join(' '))).toEqual([
      `findmnt -J --nofsroot -o TARGET,SOURCE,FSROOT -T ${image}`,
      'blkid -s UUID -o value /dev/mapper/vgroup-lv--data',
    ]);
  });

  it('a bind mount of a folder: the path from the root of the file system', async () => {
    const r = new RecordingRunner()
      .on('findmnt', findmnt(dir, '/dev/sdc1', '/backups/box'))
      .on('blkid', { stdout: '1234-ABCD\n' });
    expect((await probeImageSource(r, image))?.pathInFs).toBe(
      '/backups/box/images/zshield-box-20261129T030000Z.img.zst',
    );
  });

  it('no device under it (tmpfs), no UUID, or no findmnt: nothing recorded but the path', async () => {
    const tmpfs = new RecordingRunner().on('findmnt', findmnt(dir, 'tmpfs', '/'));
    expect(await probeImageSource(tmpfs, image)).toBeNull();
    const noUuid = new RecordingRunner()
      .on('findmnt', findmnt(dir, '/dev/vdc', '/'))
      .on('blkid', { stdout: '', exitCode: 2 });
    expect(await probeImageSource(noUuid, image)).toBeNull();
    expect(await probeImageSource(new RecordingRunner().withoutTool('findmnt'), image)).toBeNull();
  });
});
