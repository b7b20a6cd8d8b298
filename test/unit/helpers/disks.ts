import type { PrototypeFacts } from '../../../src/golden/probe.js';
import type { FactoryInput } from '../../../src/recovery/factory-input.js';
import type { Disk } from '../../../src/system/disks.js';
import { GiB, MiB } from './lvm-json.js';

/**
 * The disks and golden-root facts the factory-reset-shaped plans are built from (factory reset,
 * golden prepare, the off-box restore), as the probes would report them on the bench's guest:
 * one builder so the tests differ only where their scenario does.
 */

/** A whole virtio disk as system/disks.ts probes it: no partitions, nothing mounted, unless given. */
export function disk(name: string, serial: string, sizeGiB: number, extra: Partial<Disk> = {}): Disk {
  return {
    name,
    path: `/dev/${name}`,
    sizeBytes: sizeGiB * GiB,
    serial,
    wwn: '',
    model: 'QEMU',
    removable: false,
    readOnly: false,
    partitions: [],
    mounted: [],
    ...extra,
  };
}

/** What the golden root probe reports on a Debian golden medium (GRUB's Debian names). */
export function goldenFacts(over: Partial<FactoryInput['golden']> = {}): FactoryInput['golden'] {
  return {
    grubInstall: 'grub-install',
    grubMkconfig: 'grub-mkconfig',
    grubCfg: '/boot/grub/grub.cfg',
    initramfsTool: null,
    fstab: '',
    defaultGrub: null,
    goldenUuid: 'aaaa',
    rootUsedBytes: 600 * MiB,
    bootUsedBytes: 60 * MiB,
    ...over,
  };
}

/** The prototype's facts as golden prepare's probe reports them on the bench's guest (systemd). */
export function prototypeFacts(over: Partial<PrototypeFacts> = {}): PrototypeFacts {
  return {
    grubInstall: 'grub-install',
    grubMkconfig: 'grub-mkconfig',
    grubCfg: '/boot/grub/grub.cfg',
    fstab: '',
    kernel: '/boot/vmlinuz-6.1.0-50-cloud-amd64',
    initrd: '/boot/initrd.img-6.1.0-50-cloud-amd64',
    init: 'systemd',
    rcLocal: null,
    rcLocalPath: '/etc/rc.local',
    usedBytes: null,
    ...over,
  };
}
