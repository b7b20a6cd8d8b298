import { existsSync, lstatSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { RefusedError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { type Identity, readHostname, rewriteHosts, rewriteInterfaces } from './identity.js';

/**
 * Write another identity into the mounted snapshot at `mountPoint`. The paths are checked to stay
 * inside it: a symlink in the image (etc -> /etc) must not make zshield rewrite the running
 * system's files.
 */
export function writeIdentity(log: Pick<Logger, 'info'>, mountPoint: string, id: Identity): void {
  const root = realpathSync(mountPoint);
  const inside = (rel: string): string | null => {
    const full = path.join(root, rel);
    if (!existsSync(path.dirname(full))) return null;
    const dir = realpathSync(path.dirname(full));
    if (dir !== root && !dir.startsWith(`${root}/`)) {
      throw new RefusedError(
        `the image's /${path.dirname(rel)} leads outside it (a symlink): its identity is not changed`,
      );
    }
    const st = lstatSync(full, { throwIfNoEntry: false });
    if (st && !st.isFile()) {
      throw new RefusedError(`the image's /${rel} is not a regular file: its identity is not changed`);
    }
    return full;
  };
  const read = (rel: string) => {
    const f = inside(rel);
    return f && existsSync(f) ? readFileSync(f, 'utf8') : null;
  };
  const write = (rel: string, text: string) => {
    const f = inside(rel);
    if (!f) throw new RefusedError(`the image has no /${path.dirname(rel)}: its identity is not changed`);
    const mode = existsSync(f) ? statSync(f).mode & 0o7777 : 0o644;
    writeFileSync(f, text, { mode });
  };
  const oldName = readHostname(read('etc/hostname') ?? '');
  let oldAddress: string | null = null;
  if (id.ip) {
    const ifaces = read('etc/network/interfaces');
    if (ifaces === null) {
      throw new RefusedError('the image has no /etc/network/interfaces: --ip has no address to change', {
        hint: 'make the image without --ip and set the address on the standby itself',
      });
    }
    const r = rewriteInterfaces(ifaces, id.ip);
    oldAddress = r.oldAddress;
    write('etc/network/interfaces', r.text);
  }
  write('etc/hostname', `${id.hostname}\n`);
  write('etc/hosts', rewriteHosts(read('etc/hosts') ?? '', { hostname: oldName, address: oldAddress }, id));
  log.info(
    `image: identity ${oldName ?? '(none)'} -> ${id.hostname}${id.ip ? `, ${oldAddress} -> ${id.ip}` : ''}`,
  );
}
