import type { Step } from '../plan.js';
import { mutating as cmd } from './root-copy.js';

/**
 * Install zshield-boot.service (and zshield.service, when given) into a root's /etc/systemd/system
 * and enable them there as `systemctl enable` would on the running system (`--root`: offline, from
 * the units' [Install] sections). Shared by golden prepare and the factory reset.
 */
export function systemdUnitSteps(root: string, units: { boot: string; daemon?: string | undefined }): Step[] {
  const dir = `${root}/etc/systemd/system`;
  const named: [string, string][] = [['zshield-boot.service', units.boot]];
  if (units.daemon !== undefined) named.push(['zshield.service', units.daemon]);
  return [
    { title: 'make the systemd unit folder', command: cmd('mkdir', ['-p', dir]) },
    ...named.map(([name, text]) => ({
      title: `install ${name}`,
      command: cmd('tee', [`${dir}/${name}`], { input: text }),
    })),
    {
      title: `enable ${named.map(([n]) => n).join(' and ')}`,
      command: cmd('systemctl', ['--root', root, 'enable', ...named.map(([n]) => n)]),
    },
  ];
}
