import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Appliance } from '../bench/appliance.js';
import { diskImagePath } from '../bench/disk-images.js';
import { GOLDEN_SERIAL, SYSTEM_SERIAL, freshWorkDir, type LvRow, tag, writeConfig } from './lib.js';

// Issue 11.7: a disk from another box, with its own VG named vgroup, attached beside the system
// disk. LVM alone refuses every command that names vgroup ("Use --select vg_uuid=..."); zshield
// restricts its LVM commands to the system disk's PVs, so backup, restore, image and status act on
// the system's VG, and the other disk is not changed by a single byte. One kernel boot.

const FOREIGN_SERIAL = 'ZS-FOREIGN-HDD';
const NAMED = {
  log: { file: '/var/log/zshield/zshield.log', level: 'debug' },
  disks: { golden: { serial: GOLDEN_SERIAL }, system: { serial: SYSTEM_SERIAL } },
  image: { dir: '/diskbackup', keep: 5 },
};
/** Shell: the /dev node of the disk with this serial (true at the end: `set -e` safe). */
const bySerial = (serial: string) =>
  `$(for d in /sys/block/vd*; do [ "$(cat $d/serial)" = ${serial} ] && echo /dev/\${d##*/}; done; true)`;
const sys = bySerial(SYSTEM_SERIAL);
const foreign = bySerial(FOREIGN_SERIAL);

/** An LV of the system's vgroup (`lvs vgroup` alone is refused: the name is not unique). */
async function sysLv(vm: Appliance, name: string): Promise<LvRow | undefined> {
  const out = await vm.shOk(
    `lvs -a --reportformat json -o lv_name,lv_attr,lv_uuid,lv_tags,lv_size,origin,snap_percent --devices ${sys}1 vgroup`,
  );
  return (JSON.parse(out) as { report: { lv: LvRow[] }[] }).report[0]!.lv.find((l) => l.lv_name === name);
}

/** The other box's VG as LVM sees it (through its own disk only). */
const foreignLvm = (vm: Appliance) =>
  vm.shOk(
    `vgs --noheadings -o vg_uuid,vg_tags,lv_count --devices ${foreign}1 vgroup; lvs -a --noheadings -o lv_name,lv_uuid,lv_attr,lv_tags --devices ${foreign}1 vgroup`,
  );

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

describe('a second disk with a VG of the same name', () => {
  let vm: Appliance;
  let workDir: string;
  let foreignUuid: string;
  let foreignBefore: string;
  let foreignLvmBefore: string;
  const marker = () =>
    vm.shOk('mount -o ro /dev/vgroup/lv-root /mnt/root && cat /mnt/root/marker; umount /mnt/root');

  beforeAll(async () => {
    workDir = freshWorkDir('foreign-vg');
    vm = await Appliance.boot({
      workDir,
      disks: [
        { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
        { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
        { name: 'foreign', sizeMiB: 512, serial: FOREIGN_SERIAL },
      ],
    });
    // The system disk as the seed lays it out (lib.ts's makeSeedLayout, with its own disk lookup:
    // diskBySerial fails under `set -e` when the disk is not the last vd*), plus an LV for images.
    // Then the other box's disk: its own vgroup with lv-root (a file system with content) and a
    // restore point of its own, left inactive as a disk that was just plugged in; made with
    // --devices, as LVM makes no second VG of an existing name otherwise.
    const out = await vm.shOk(
      `set -e
       s=${sys}; f=${foreign}
       echo 'start=2048, type=8e' | sfdisk -q "$s"
       pvcreate -q "\${s}1"
       vgcreate -q vgroup "\${s}1"
       lvcreate -q -y -L 512M -n lv-root vgroup
       lvcreate -q -y -L 256M -n lv-data vgroup
       lvcreate -q -y -L 256M -n lv-backup vgroup
       mkfs.ext4 -q /dev/vgroup/lv-root
       mkfs.ext4 -q /dev/vgroup/lv-backup
       mkdir -p /mnt/root && mount /dev/vgroup/lv-root /mnt/root && echo before > /mnt/root/marker
       mkdir /mnt/root/etc && echo "/dev/vgroup/lv-root / ext4 defaults 0 1" > /mnt/root/etc/fstab && umount /mnt/root
       vgchange -q -an vgroup >/dev/null
       echo 'start=2048, type=8e' | sfdisk -q "$f"; D="--devices \${f}1"
       pvcreate -q "\${f}1"
       vgcreate -q $D vgroup "\${f}1"
       lvcreate -q -y $D -L 128M -n lv-root vgroup
       mkfs.ext4 -q /dev/vgroup/lv-root
       mount /dev/vgroup/lv-root /mnt/root && echo other-box > /mnt/root/marker && umount /mnt/root
       lvcreate -q -y $D -s -L 32M -n snap0 --addtag zshield_reason=daily vgroup/lv-root
       vgchange -q $D -an vgroup >/dev/null
       vgchange -q --devices "\${s}1" -ay vgroup >/dev/null
       mkdir -p /diskbackup && mount /dev/vgroup/lv-backup /diskbackup
       sync
       echo "uuid=$(vgs --noheadings -o vg_uuid $D vgroup | tr -d ' ')"`,
      { timeoutMs: 300_000 },
    );
    foreignUuid = /^uuid=(\S+)$/m.exec(out)?.[1] ?? '';
    expect(foreignUuid).toMatch(/^\w{6}(-\w{4}){5}-\w{6}$/);
    foreignBefore = await sha256(diskImagePath(workDir, 'foreign'));
    foreignLvmBefore = await foreignLvm(vm);
    expect(foreignLvmBefore).toMatch(/lv-root .*\n.*snap0 .*zshield_reason=daily/);
    await writeConfig(vm, NAMED);
  });
  afterAll(async () => {
    await vm?.kill();
  });

  it('LVM alone refuses the name; zshield backup, status, image create and recover latest act on the system VG only', {
    timeout: 900_000,
  }, async () => {
    // What the issue saw: LVM's own answer to the name.
    const raw = await vm.sh('vgs vgroup');
    expect(raw.code).toBe(5);
    expect(raw.stderr).toContain('--select vg_uuid=');
    // The probe zshield decides with, as LVM prints it (the unit tests' fixture is this output).
    const pvs = await vm.shOk('pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags');
    fs.writeFileSync(path.join(workDir, 'pvs-two-vgroup.json'), pvs);
    expect(pvs).toContain(foreignUuid);

    // Nothing tells the two apart (no disk named, the root is the golden initramfs, no zshield tags).
    await writeConfig(vm, { log: NAMED.log });
    const unsure = await vm.run(['zshield', 'backup']);
    expect(unsure.code, unsure.stderr).toBe(6);
    const line = unsure.stderr.split('\n').find((l) => l.startsWith('zshield: ')) ?? '';
    expect(line).toMatch(
      /^zshield: 2 volume groups are named vgroup: .*; zshield cannot tell which is this system's \(name the system disk in the config: disks\.system\.serial\)$/,
    );
    expect(line).toMatch(new RegExp(`vgroup \\(uuid [-\\w]+\\) on /dev/vd. \\(serial ${SYSTEM_SERIAL}\\)`));
    expect(line).toContain(`vgroup (uuid ${foreignUuid}) on /dev/vdc (serial ${FOREIGN_SERIAL})`);
    expect(await sysLv(vm, 'snap0')).toBeUndefined();

    await writeConfig(vm, NAMED);
    const backup = await vm.run(['zshield', 'backup', '--verbose'], { timeoutMs: 300_000 });
    expect(backup.code, backup.stderr).toBe(0);
    expect(backup.stdout).toMatch(/backup taken: vgroup\/snap0 \(manual\)/);
    // A backup's plan goes to the log (and the terminal's stderr): it says what LVM is restricted to.
    expect(backup.stderr).toMatch(
      new RegExp(
        `note: LVM commands see only /dev/vd.1 \\(--devices\\): .*uuid ${foreignUuid}\\) on /dev/vd. \\(serial ${FOREIGN_SERIAL}\\) is another disk's`,
      ),
    );
    expect(tag(await sysLv(vm, 'snap0'), 'reason')).toBe('manual');

    const status = await vm.run(['zshield', 'status']);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^restore point: snap0, valid/m);
    expect(status.stdout).toMatch(
      new RegExp(
        `^other disk: +/dev/vd. \\(serial ${FOREIGN_SERIAL}\\) holds another volume group named vgroup \\(uuid ${foreignUuid}\\)`,
        'm',
      ),
    );
    const json = JSON.parse((await vm.run(['zshield', 'status', '--json'])).stdout);
    expect(json.foreignVgs).toEqual([
      { name: 'vgroup', uuid: foreignUuid, disks: [expect.stringContaining(FOREIGN_SERIAL)] },
    ]);

    const image = await vm.run(['zshield', 'image', 'create'], { timeoutMs: 600_000 });
    expect(image.code, image.stderr).toBe(0);
    expect(image.stdout).toMatch(/image made and verified: \/diskbackup\/\S+\.img\.zst/);
    expect(image.stdout + image.stderr).toContain('note: LVM commands see only /dev/vdb1 (--devices)');

    await vm.shOk('mount /dev/vgroup/lv-root /mnt/root && echo after > /mnt/root/marker && umount /mnt/root');
    const restore = await vm.run(['zshield', 'recover', 'latest', '--yes'], { timeoutMs: 600_000 });
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.stdout).toMatch(/restore done: lv-root is back at/);
    expect(await marker()).toBe('before\n');
    expect(tag(await sysLv(vm, 'snap0'), 'reason')).toBe('post-restore');

    // A rotation (snap0 exists): lvcreate, lvremove, lvrename and the VG tags, all restricted.
    const rotate = await vm.run(['zshield', 'backup'], { timeoutMs: 300_000 });
    expect(rotate.code, rotate.stderr).toBe(0);
    expect(tag(await sysLv(vm, 'snap0'), 'reason')).toBe('manual');
    // lvm lvpoll (the finishing phase of a deferred merge) takes --devices after its subcommand.
    const poll = await vm.sh(`lvm lvpoll --devices ${sys}1 --polloperation merge -i 1 vgroup/lv-root`, {
      timeoutMs: 120_000,
    });
    expect(poll.stderr).not.toMatch(/unrecognized option|Error during parsing/);
    // pvs with --devices reports the system's PV only (the /boot lookups read PVs through it).
    const sysPvs = await vm.shOk(`pvs --noheadings -o pv_name,vg_uuid --devices ${sys}1`);
    expect(sysPvs).toMatch(/^\s*\/dev\/vdb1 /);
    expect(sysPvs).not.toContain(foreignUuid);

    // Every LVM command zshield ran saw the system disk only, but the one probe that decides.
    const log = (await vm.readFile('/var/log/zshield/zshield.log')).toString();
    // The runner's own lines ("debug: $ argv"), not the plan previews ("info:      $ argv", shown
    // without the --devices the runner adds, as the plan's note says).
    const lvmLines = log
      .split('\n')
      .filter((l) => /(info|debug): \$ (lvm|lv[a-z]+|vg[a-z]+|pv[a-z]+) /.test(l));
    const unscoped = lvmLines.filter((l) => !/ --devices \/dev\/vd.1 /.test(l));
    expect(lvmLines.length).toBeGreaterThan(10);
    expect(new Set(unscoped.map((l) => l.replace(/^.*\$ /, '')))).toEqual(
      new Set(['pvs --reportformat json -o pv_name,vg_name,vg_uuid,vg_tags']),
    );
    for (const tool of ['lvs', 'vgs', 'lvcreate', 'lvremove', 'lvrename', 'lvconvert', 'vgchange']) {
      expect(
        lvmLines.some((l) => l.includes(`: $ ${tool} --devices `)),
        tool,
      ).toBe(true);
    }

    // The other box's disk: its metadata as it was, and every byte of it.
    expect(await foreignLvm(vm)).toBe(foreignLvmBefore);
    await vm.shOk('sync');
    expect(await sha256(diskImagePath(workDir, 'foreign'))).toBe(foreignBefore);
  });
});
