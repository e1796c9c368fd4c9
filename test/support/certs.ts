/**
 * Certificates for TLS tests, made with openssl in a temporary folder: a CA, a server certificate it signs
 * (valid for a day, for the given IP addresses, 127.0.0.1 and localhost), the same server certificate expired
 * (valid for one day in 2020, through `openssl ca`, which can back-date), and a second CA that signed none of
 * them (a client trusting only it must refuse the server).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCertificates {
  readonly dir: string;
  /** PEM file paths. */
  readonly files: { ca: string; otherCa: string; cert: string; key: string; expiredCert: string };
  /** The CA's PEM text (node:tls `ca`). */
  readonly ca: string;
  readonly otherCa: string;
  remove(): void;
}

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: 'pipe' });

export function makeCertificates(ips: readonly string[]): TestCertificates {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'oncely-certs-'));
  const f = (name: string) => path.join(dir, name);
  try {
    const selfSigned = (name: string, cn: string) =>
      openssl(
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${cn}`]
          .concat(['-keyout', f(`${name}.key`), '-out', f(`${name}.pem`)])
          .concat([
            '-addext',
            'basicConstraints=critical,CA:TRUE',
            '-addext',
            'keyUsage=keyCertSign,cRLSign',
          ]),
        dir,
      );
    selfSigned('ca', 'oncely test CA');
    selfSigned('other-ca', 'oncely other CA');
    const san = ['IP:127.0.0.1', 'DNS:localhost', ...ips.map((ip) => `IP:${ip}`)].join(',');
    openssl(
      ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=oncely test server'].concat([
        '-keyout',
        f('server.key'),
        '-out',
        f('server.csr'),
        '-addext',
        `subjectAltName=${san}`,
      ]),
      dir,
    );
    writeFileSync(f('index.txt'), '');
    writeFileSync(f('serial'), '1000\n');
    writeFileSync(
      f('ca.cnf'),
      [
        '[ ca ]',
        'default_ca = test',
        '[ test ]',
        `dir = ${dir}`,
        `database = ${f('index.txt')}`,
        `new_certs_dir = ${dir}`,
        `serial = ${f('serial')}`,
        'default_md = sha256',
        'policy = any',
        'copy_extensions = copy',
        'unique_subject = no',
        '[ any ]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    const sign = (out: string, dates: string[]) =>
      openssl(
        [
          'ca',
          '-batch',
          '-notext',
          '-config',
          f('ca.cnf'),
          '-cert',
          f('ca.pem'),
          '-keyfile',
          f('ca.key'),
        ].concat(['-in', f('server.csr'), '-out', f(out), ...dates]),
        dir,
      );
    sign('server.pem', ['-days', '2']);
    sign('expired.pem', ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = String((error as { stderr?: unknown }).stderr ?? '');
    throw new Error(`makeCertificates: openssl failed: ${stderr}`, { cause: error });
  }
  return {
    dir,
    files: {
      ca: f('ca.pem'),
      otherCa: f('other-ca.pem'),
      cert: f('server.pem'),
      key: f('server.key'),
      expiredCert: f('expired.pem'),
    },
    ca: readFileSync(f('ca.pem'), 'utf8'),
    otherCa: readFileSync(f('other-ca.pem'), 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** redis-server arguments for a TLS port with `cert` (clients are not asked for certificates). */
export function tlsArgs(certs: TestCertificates, tlsPort: number, cert = certs.files.cert): string[] {
  return [
    ...['--tls-port', String(tlsPort), '--tls-auth-clients', 'no'],
    ...['--tls-cert-file', cert, '--tls-key-file', certs.files.key, '--tls-ca-cert-file', certs.files.ca],
  ];
}
