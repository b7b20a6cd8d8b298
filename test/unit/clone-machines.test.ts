import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { loadPowerSecrets, parsePowerState, powerCommand, powerStatus } from '../../src/clone/power.js';
import { parseConfigText } from '../../src/config/load.js';
import { ConfigError, NotFoundError, RefusedError } from '../../src/errors.js';
import { RecordingRunner } from '../../src/system/recording-runner.js';
import { FakeClock, tempDir, testContext } from './helpers/context.js';
import { checkCloneConfig } from '../../src/clone/check.js';

const F = '/etc/zshield/zshield.conf';
const ipmi = (host: string, ...action: string[]) => [
  'ipmitool',
  '-I',
  'lanplus',
  '-C',
  '3',
  '-H',
  host,
  '-U',
  'admin',
  '-E',
  'chassis',
  'power',
  ...action,
];
const box = (name: string, mac: string, extra: Record<string, unknown> = {}) => ({
  name,
  mac,
  disk: `SERIAL-${name}`,
  power: { status: ipmi(name, 'status'), on: ipmi(name, 'on'), cycle: ipmi(name, 'cycle') },
  ...extra,
});
const parse = (clone: unknown) => parseConfigText(JSON.stringify({ clone }), F).config;
function problems(clone: unknown): { where: string; message: string }[] {
  try {
    parse(clone);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('clone.machines', () => {
  it('parses name, MAC (lower-cased), disk, one argv per power action; no password by default', () => {
    const c = parse({ machines: [box('box1', '52:54:00:AA:00:01')] });
    expect(c.clone.machines).toEqual([
      {
        name: 'box1',
        mac: '52:54:00:aa:00:01',
        disk: 'SERIAL-box1',
        power: { status: ipmi('box1', 'status'), on: ipmi('box1', 'on'), cycle: ipmi('box1', 'cycle') },
        password: null,
      },
    ]);
  });

  it('a config still using clone.power gets an error naming clone.machines (and the other problems too)', () => {
    const p = problems({ power: [{ name: 'b', command: ['ipmitool'] }], portbase: 9001 });
    expect(p).toContainEqual({
      where: `${F}: clone.power`,
      message: expect.stringMatching(/^replaced by clone\.machines \(per box: name, mac, disk, power/),
    });
    expect(p.map((x) => x.where)).toContain(`${F}: clone.portbase`);
    expect(p.some((x) => /unknown setting/.test(x.message))).toBe(false);
  });

  it('refuses a password in argv (ipmitool -P, -Psecret, --password=)', () => {
    for (const bad of [['-P', 'secret'], ['-Psecret'], ['--password=secret'], ['--passwd', 'x']]) {
      const m = box('box1', '52:54:00:aa:00:01');
      m.power.cycle = [...ipmi('box1', 'cycle'), ...bad];
      const p = problems({ machines: [m] });
      expect(p).toEqual([
        {
          where: `${F}: clone.machines.0.power.cycle`,
          message: expect.stringMatching(/^a password in argv/),
        },
      ]);
    }
    // -p is ipmitool's port: allowed.
    const m = box('box1', '52:54:00:aa:00:01');
    m.power.on = [...ipmi('box1', 'on'), '-p', '623'];
    expect(parse({ machines: [m] }).clone.machines[0]!.power.on).toContain('-p');
  });

  it('refuses duplicate names and MACs (case does not hide a duplicate), a bad MAC, a missing action', () => {
    expect(
      problems({ machines: [box('a', '52:54:00:aa:00:01'), box('a', '52:54:00:AA:00:01')] }).map(
        (p) => p.where,
      ),
    ).toEqual([`${F}: clone.machines.1.name`, `${F}: clone.machines.1.mac`]);
    expect(problems({ machines: [box('a', '52-54-00-aa-00-01')] })[0]!.where).toBe(
      `${F}: clone.machines.0.mac`,
    );
    const noCycle = box('a', '52:54:00:aa:00:01') as { power: Record<string, unknown> };
    delete noCycle.power['cycle'];
    expect(problems({ machines: [noCycle] })[0]!.where).toBe(`${F}: clone.machines.0.power.cycle`);
  });

  it('a password is a file or a variable, exactly one', () => {
    for (const password of [{}, { file: '/etc/zshield/bmc.pw', fromEnv: 'BMC_PW' }]) {
      expect(problems({ machines: [box('a', '52:54:00:aa:00:01', { password })] })[0]!.message).toMatch(
        /exactly one of password\.file and password\.fromEnv/,
      );
    }
    expect(
      problems({ machines: [box('a', '52:54:00:aa:00:01', { password: { file: 'rel.pw' } })] })[0]!.where,
    ).toBe(`${F}: clone.machines.0.password.file`);
  });
});

describe('power commands', () => {
  it("the password reaches the command's environment (IPMI_PASSWORD by default), never its argv", async () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const pw = path.join(dir, 'bmc.pw');
    writeFileSync(pw, 'hunter2\n', { mode: 0o600 });
    const c = parse({
      machines: [
        box('a', '52:54:00:aa:00:01', { password: { file: pw } }),
        box('b', '52:54:00:aa:00:02', { password: { fromEnv: 'BMC_B', env: 'AMT_PASSWORD' } }),
        box('c', '52:54:00:aa:00:03'),
      ],
    });
    const secrets = loadPowerSecrets(c.clone.machines, { BMC_B: 's3cret' });
    const runner = new RecordingRunner().on(/status$/, { stdout: 'Chassis Power is off\n' });
    for (const m of c.clone.machines) expect(await powerStatus(runner, m, secrets)).toBe('off');
    expect(runner.calls.map((x) => x.env)).toEqual([
      { IPMI_PASSWORD: 'hunter2' },
      { AMT_PASSWORD: 's3cret' },
      undefined,
    ]);
    expect(runner.calls.flatMap((x) => x.argv).join(' ')).not.toMatch(/hunter2|s3cret/);
    const cycle = powerCommand(c.clone.machines[0]!, 'cycle', secrets);
    expect(cycle.mutates).toBe(true);
    expect(powerCommand(c.clone.machines[0]!, 'status', secrets).mutates).toBe(false);
  });

  it('a password file others can read, a missing one, or an unset variable: refused before anything runs', () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const pw = path.join(dir, 'bmc.pw');
    writeFileSync(pw, 'hunter2\n');
    chmodSync(pw, 0o644);
    const m = (password: unknown) =>
      parse({ machines: [box('a', '52:54:00:aa:00:01', { password })] }).clone.machines;
    expect(() => loadPowerSecrets(m({ file: pw }))).toThrow(RefusedError);
    expect(() => loadPowerSecrets(m({ file: pw }))).toThrow(/readable by others \(mode 644\)/);
    expect(() => loadPowerSecrets(m({ file: path.join(dir, 'none') }))).toThrow(NotFoundError);
    expect(() => loadPowerSecrets(m({ fromEnv: 'ZS_UNSET_PW' }), {})).toThrow(/ZS_UNSET_PW is not set/);
  });

  it('reads on/off from ipmitool and from a bare word; a failing or unclear status is an error naming the box', async () => {
    expect(parsePowerState('Chassis Power is on\n')).toBe('on');
    expect(parsePowerState('off')).toBe('off');
    expect(parsePowerState('Unable to establish IPMI v2 / RMCP+ session')).toBeNull();
    const m = parse({ machines: [box('a', '52:54:00:aa:00:01')] }).clone.machines[0]!;
    const failing = new RecordingRunner().on('ipmitool', {
      exitCode: 1,
      stderr: 'Unable to establish IPMI v2',
    });
    await expect(powerStatus(failing, m, new Map())).rejects.toThrow(
      /^a: its power status command failed .*nothing was powered/,
    );
    const unclear = new RecordingRunner().on('ipmitool', { stdout: 'hello' });
    await expect(powerStatus(unclear, m, new Map())).rejects.toThrow(/said neither on nor off/);
  });
});

describe('config check', () => {
  it('names a machine whose BMC password file others can read (what clone send --netboot would refuse)', async () => {
    const { dir, cleanup } = tempDir();
    onTestFinished(cleanup);
    const pw = path.join(dir, 'bmc.pw');
    writeFileSync(pw, 'hunter2\n');
    chmodSync(pw, 0o644);
    const c = testContext({ runner: new RecordingRunner(), dir, clock: new FakeClock(new Date()) });
    c.config.clone.machines = parse({
      machines: [box('a', '52:54:00:aa:00:01', { password: { file: pw } })],
    }).clone.machines;
    const errors = await checkCloneConfig(c);
    expect(errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^password file .* of a is readable by others/),
    ]);
  });
});
