import fs from 'node:fs';
import path from 'node:path';
import { Appliance } from '../bench/appliance.js';
import type { GuestJob, ShResult } from '../bench/guest-job.js';
import { BENCH_DIR } from '../bench/bench-env.js';

/** Serials the guest finds its disks by (device names are not stable on a real box either). */
export const GOLDEN_SERIAL = 'ZS-GOLDEN-CF';
export const SYSTEM_SERIAL = 'ZS-SYSTEM-HDD';

/** The scenario folders this test file made: emptied of all but their logs after the file. */
export const scenarioDirs = new Set<string>();

/**
 * A work folder of its own for a scenario, emptied first so each run starts from blank disks. Its
 * disks and other files go when the test file ends (test/appliance/file-cleanup.ts), so the gate
 * needs room for one scenario per lane, not for all of them; its logs stay.
 */
export function freshWorkDir(name: string): string {
  const dir = path.join(BENCH_DIR, 'work', name);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  scenarioDirs.add(dir);
  return dir;
}

/** Removes every file of the folder but its logs (`*.log`); ZSHIELD_BENCH_KEEP=1 keeps them all. */
export function emptyAllButLogs(dir: string): void {
  if (process.env.ZSHIELD_BENCH_KEEP === '1') return;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return; // never made, or already gone
  }
  for (const name of names) {
    if (!name.endsWith('.log')) fs.rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Boot the appliance with a 2 GiB golden medium and a 4 GiB blank system disk. */
export async function bootAppliance(
  workDir: string,
  extra: { appendCmdline?: string } = {},
): Promise<Appliance> {
  return Appliance.boot({
    workDir,
    disks: [
      { name: 'golden', sizeMiB: 2048, serial: GOLDEN_SERIAL },
      { name: 'system', sizeMiB: 4096, serial: SYSTEM_SERIAL },
    ],
    ...extra,
  });
}

/**
 * Power-cut shims in a golden medium are inert unless the boot names their cut in this fw_cfg
 * entry (`cutBoot`); in the guest they read it at CUT_FLAG.
 */
export const CUT_FLAG = '/sys/firmware/qemu_fw_cfg/by_name/opt/bench/cut/raw';
export const cutBoot = (cut: string) => ({ fwCfg: { 'bench/cut': cut } });

/** Shell snippet: the /dev node of the disk with this serial. */
export const diskBySerial = (serial: string) =>
  // `; true`: the loop's status is its last test's, which fails when the disk is not the last vd*
  // (a `set -e` script would stop there).
  `$(for d in /sys/block/vd*; do [ "$(cat $d/serial)" = ${serial} ] && echo /dev/\${d##*/}; done; true)`;

/**
 * Lay out the system disk as the seed does (done by hand here; factory reset does it for real):
 * one LVM partition, VG vgroup, lv-root with an ext4 file system holding a marker, and a user data
 * LV that backups never touch.
 */
export async function makeSeedLayout(vm: Appliance, rootMiB = 1024): Promise<void> {
  await vm.shOk(
    `set -e
     disk=${diskBySerial(SYSTEM_SERIAL)}
     echo 'start=2048, type=8e' | sfdisk -q "$disk"
     pvcreate -q "\${disk}1"
     vgcreate -q vgroup "\${disk}1"
     lvcreate -q -y -L ${rootMiB}M -n lv-root vgroup
     lvcreate -q -y -L 256M -n lv-data vgroup
     mkfs.ext4 -q /dev/vgroup/lv-root
     mkdir -p /mnt/root && mount /dev/vgroup/lv-root /mnt/root && echo before > /mnt/root/marker && umount /mnt/root`,
    { timeoutMs: 180_000 },
  );
}

export interface LvRow {
  lv_name: string;
  lv_attr: string;
  lv_uuid: string;
  lv_tags: string;
  lv_size: string;
  origin: string;
  snap_percent: string;
}

export async function lvs(vm: Appliance): Promise<LvRow[]> {
  const out = await vm.shOk(
    'lvs -a --reportformat json --units b --nosuffix -o lv_name,lv_attr,lv_uuid,lv_tags,lv_size,origin,snap_percent vgroup',
  );
  // -a: a snapshot being merged is hidden and reported as "[snap0]".
  return (JSON.parse(out) as { report: { lv: LvRow[] }[] }).report[0]!.lv.map((l) => ({
    ...l,
    lv_name: l.lv_name.replace(/^\[(.*)\]$/, '$1'),
  }));
}

export async function lv(vm: Appliance, name: string): Promise<LvRow | undefined> {
  return (await lvs(vm)).find((l) => l.lv_name === name);
}

export async function writeConfig(vm: Appliance, config: unknown): Promise<void> {
  await vm.writeFile('/etc/zshield/zshield.conf', JSON.stringify(config, null, 2));
}

/** The first line of stderr: what the operator sees of an error. */
export const firstErrLine = (r: ShResult) => r.stderr.split('\n')[0] ?? '';

/** The value of a zshield_<key>= tag on an LV row. */
export const tag = (row: { lv_tags: string } | undefined, key: string) =>
  row?.lv_tags
    .split(',')
    .find((t) => t.startsWith(`zshield_${key}=`))
    ?.split('=')[1];

/**
 * Wait for a power cut that a shim in the guest makes while `job` runs: resolves once qemu has
 * exited; throws at once (with the job's output) when the job ends first, i.e. the cut never came.
 */
export async function untilPowerCut(vm: Appliance, job: GuestJob, timeoutMs = 900_000): Promise<void> {
  const ended = await Promise.race([
    vm.waitForExit(timeoutMs).then(() => null),
    job.wait({ timeoutMs }).then(
      (r) => r,
      () => null,
    ),
  ]);
  if (ended) {
    throw vm.failure(
      `the job ended (exit ${ended.code}) without the power cut its shim should make\n--- stdout ---\n${ended.stdout}\n--- stderr ---\n${ended.stderr}`,
    );
  }
  await vm.waitForExit(timeoutMs);
}

/**
 * The guest's clock. A case that moves it moves it relative to the guest's own time, never to a
 * fixed date: guests start on the host's date (or on ZSHIELD_BENCH_RTC's), and what the cases
 * before made (snapshots, images) carries that time. All in UTC, as the guest is.
 */
export const DAY_S = 86_400;

/** The guest's time, in seconds since the epoch. */
export async function guestNow(vm: Appliance): Promise<number> {
  const s = Number((await vm.shOk('date -u +%s')).trim());
  if (!Number.isInteger(s)) throw vm.failure(`the guest's clock did not read as a number: ${s}`);
  return s;
}

/**
 * Midnight (UTC) of the guest's day `days` after today: `await guestDay(vm, 1) + 9 * 3600` is
 * tomorrow 09:00 on the guest's calendar, later than anything made so far.
 */
export async function guestDay(vm: Appliance, days: number): Promise<number> {
  return Math.floor((await guestNow(vm)) / DAY_S) * DAY_S + days * DAY_S;
}

/** Sets the guest's clock to `epochS` (seconds since the epoch). */
export async function setGuestClock(vm: Appliance, epochS: number): Promise<void> {
  await vm.shOk(`date -u -s @${epochS} >/dev/null`);
}

/** `epochS` as an ISO string, as zshield's JSON writes times. */
export const isoOf = (epochS: number) => new Date(epochS * 1000).toISOString();

/**
 * A shim that stands before the real `tool` for every command of this boot and every later boot
 * of the same disk: /usr/local/sbin comes first on the guest's PATH (rcS, the agent, the profile).
 * For a cut at a state the test names (`script` looks at the tool's arguments or the devices, then
 * powers off, or execs the real tool); `removeShim` puts the real tool back.
 */
export const GLOBAL_SHIM_DIR = '/usr/local/sbin';
export const installShim = (vm: Appliance, tool: string, script: string) =>
  vm.writeFile(`${GLOBAL_SHIM_DIR}/${tool}`, script, 0o755);
export const removeShim = (vm: Appliance, tool: string) => vm.shOk(`rm ${GLOBAL_SHIM_DIR}/${tool}`);

/**
 * Tool shims for one command: a folder of wrappers put before the real tools by `SHIM_PATH`. The test decides when
 * a held tool goes on, never a clock, so the outcome does not depend on how fast the guest is.
 */
export const SHIM_DIR = '/tmp/slow';
export const SHIM_PATH = `PATH=${SHIM_DIR}:/usr/sbin:/usr/bin:/sbin:/bin`;
const shimEntered = (tool: string) => `${SHIM_DIR}/${tool}.entered`;

async function writeShim(vm: Appliance, tool: string, body: string): Promise<void> {
  await vm.shOk(
    `set -e; mkdir -p ${SHIM_DIR}; real=$(command -v ${tool}); rm -f ${shimEntered(tool)} ${SHIM_DIR}/${tool}.release
     printf '#!/bin/sh\\n${body}\\n' "$real" > ${SHIM_DIR}/${tool}; chmod +x ${SHIM_DIR}/${tool}`,
  );
}

/**
 * `tool` (under SHIM_PATH), once entered, waits until `releaseTool`, then runs: the caller waits
 * for it with `untilEntered`. A job killed while held is killed before the tool did anything.
 */
export const holdTool = (vm: Appliance, tool: string) =>
  writeShim(
    vm,
    tool,
    `touch ${shimEntered(tool)}\\nwhile [ ! -e ${SHIM_DIR}/${tool}.release ]; do sleep 0.2; done\\nexec %s "$@"`,
  );
export const releaseTool = (vm: Appliance, tool: string) => vm.shOk(`touch ${SHIM_DIR}/${tool}.release`);

/** `tool` (under SHIM_PATH) does its work, then says so and hangs: a job stopped right after it. */
export const hangAfterTool = (vm: Appliance, tool: string) =>
  writeShim(vm, tool, `%s "$@" || exit $?\\ntouch ${shimEntered(tool)}\\nexec sleep 300`);

/** Until a shimmed tool was entered (held) or has done its work (hung after). */
export const untilEntered = (vm: Appliance, tool: string, timeoutMs?: number) =>
  waitForFile(vm, shimEntered(tool), timeoutMs);

/** Until `file` exists in the guest; the timeout bounds a hang, it is not what is tested. */
export async function waitForFile(vm: Appliance, file: string, timeoutMs = 180_000): Promise<void> {
  const r = await vm.sh(
    `i=0; while [ ! -e ${file} ] && [ $i -lt ${timeoutMs / 200} ]; do sleep 0.2; i=$((i+1)); done; [ -e ${file} ]`,
    { timeoutMs: timeoutMs + 10_000 },
  );
  if (r.code !== 0) throw vm.failure(`${file} did not appear`);
}
