// The host packages of the remote tests and of the RGW, installed at once before the gate runs its
// parts side by side (build/check.sh): the remote project and an appliance file that starts an RGW
// would otherwise both run apt-get, and the second found dpkg's lock taken (seen on a fresh machine).
//   tsx test/remote/install-packages.ts
import { RGW_PACKAGES } from './rgw.js';
import { ensurePackages, SSHD_PACKAGES } from './sshd.js';

ensurePackages([...SSHD_PACKAGES, ...RGW_PACKAGES]);
