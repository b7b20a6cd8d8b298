// The words a box keeps across upgrades, pinned: LVM tags, LV names, record file names and config
// keys. A zshield upgraded mid-life must find its restore point, its records and its settings as an
// older one wrote them; a change here is a migration, not a rename (issue 22's "behaviour
// unchanged"). The GRUB env block and the records' bytes are pinned in atomic-file.test.ts.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../src/config/schema.js';
import { seenFile, stateFile } from '../../src/history/state.js';
import { backupFileName, PART_SUFFIX, parseBackupName } from '../../src/names/backup-files.js';
import * as tags from '../../src/names/lvm-tags.js';
import { namesOf } from '../../src/names/snapshots.js';
import { copyRecordsFile } from '../../src/remote/backups.js';
import { daemonInfoFile } from '../../src/state/daemon-info.js';
import { lastBackupFile } from '../../src/state/store.js';

describe('names a box keeps across upgrades', () => {
  it('LVM tags, byte for byte', () => {
    expect({
      reason: tags.TAG_REASON,
      time: tags.TAG_TIME,
      boot: tags.TAG_BOOT,
      rotating: tags.ROTATING_TAG,
      factory: tags.FACTORY_TAG,
      offbox: tags.OFFBOX_RESTORE_TAG,
      restoring: tags.RESTORE_TAG,
      restoreOf: tags.RESTORE_OF_TAG,
      imageRestore: tags.IMAGE_RESTORE_TAG,
      reasons: tags.REASONS,
    }).toEqual({
      reason: 'zshield_reason=',
      time: 'zshield_time=',
      boot: 'zshield_boot=',
      rotating: 'zshield_rotating',
      factory: 'zshield_factory_reset',
      offbox: 'zshield_offbox_restore',
      restoring: 'zshield_restoring',
      restoreOf: 'zshield_restore_of=',
      imageRestore: 'zshield_image_restore=',
      reasons: ['daily', 'manual', 'pre-upgrade', 'post-restore', 'factory', 'repair'],
    });
  });

  it('the LV names and the default paths', () => {
    const c = defaultConfig();
    expect(namesOf(c)).toEqual({
      vg: 'vgroup',
      root: 'lv-root',
      snap: 'snap0',
      next: 'snap0-next',
      image: 'snap0-image',
    });
    expect(c.paths).toEqual({
      stateDir: '/var/lib/zshield',
      runDir: '/run/zshield',
      eventLog: '/boot/zshield/events.jsonl',
    });
  });

  it('record and state file names', () => {
    expect(lastBackupFile('/S')).toBe(path.join('/S', 'last-backup.json'));
    expect(copyRecordsFile('/S')).toBe(path.join('/S', 'remote-copies.json'));
    expect(daemonInfoFile('/R')).toBe(path.join('/R', 'daemon.json'));
    expect(stateFile('/H')).toBe(path.join('/H', 'targets.json'));
    expect(seenFile('/H')).toBe(path.join('/H', 'catalog.seen.json'));
    const name = backupFileName('image', new Date('2026-01-02T03:04:05Z'), 'img.zst');
    expect(name).toBe('zshield-image-20260102T030405Z.img.zst');
    expect(parseBackupName(name)).toMatchObject({ kind: 'image' });
    expect(PART_SUFFIX).toBe('.zshield-part');
  });

  it('config sections and their keys', () => {
    const c = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
    const keys = Object.fromEntries(Object.keys(c).map((k) => [k, Object.keys(c[k] ?? {})]));
    expect(keys).toEqual({
      lvm: ['vg', 'rootLv', 'snapshot'],
      snapshot: ['size', 'rotation', 'warnPercent', 'errorPercent'],
      boot: ['capture', 'dir'],
      daemon: ['dailyAt', 'catchUp', 'checkEverySeconds'],
      paths: ['stateDir', 'runDir', 'eventLog'],
      disks: ['system', 'golden'],
      layout: ['bootSize', 'volumes'],
      recovery: ['countdownSeconds', 'reboot', 'hooksDir', 'exclude'],
      hooks: ['aptBackup', 'aptRequireBackup', 'aptMinIntervalMinutes', 'aptTimeoutSeconds'],
      metrics: ['textfile'],
      remote: [
        'enabled',
        'server',
        'port',
        'user',
        'destination',
        'password',
        'keyFile',
        'privateKey',
        'hostKey',
        'limit',
        'bandwidthKiBps',
        'retries',
        'connectTimeoutSeconds',
        'verifyCycle',
        'sources',
        'after',
      ],
      image: ['dir', 'source', 'tries', 'keep', 'schedule', 'tempSnapshotSize', 'mustContain'],
      history: [
        'enabled',
        'dir',
        'password',
        'keyFile',
        'publicKey',
        'source',
        'tempSnapshotSize',
        'mountPoint',
        'cacheDir',
        'keep',
        'targets',
        'verifyPercent',
        'maxLagHours',
        'retries',
        'connectTimeoutSeconds',
      ],
      clone: [
        'trustedKeys',
        'signingKey',
        'interface',
        'portbase',
        'repairPort',
        'session',
        'maxSessionAgeHours',
        'send',
        'receive',
        'machines',
      ],
      log: ['file', 'level'],
    });
  });
});
