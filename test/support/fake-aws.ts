/**
 * A local stand-in for the three AWS APIs the deploy path calls, on one port, so `serverless print` /
 * `package` and a cold start of a built function run offline (point AWS_ENDPOINT_URL_SSM,
 * AWS_ENDPOINT_URL_CLOUDFORMATION and AWS_ENDPOINT_URL_STS at `url`):
 *
 * - SSM GetParameter / GetParameters (JSON protocol): the values given (a SecureString's only with
 *   `WithDecryption`, otherwise a stand-in ciphertext), `ParameterNotFound` /
 *   `InvalidParameters` for a name not given, `AccessDeniedException` for a name listed in `denied`;
 * - CloudFormation DescribeStacks: "Stack with id … does not exist" (a first deploy);
 * - STS GetCallerIdentity: account `accountId`.
 *
 * Every request is recorded in `requests` as `ssm:<Action>:<name>[,<name>…]`, `cloudformation:<Action>` or
 * `sts:<Action>`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeParameter {
  readonly value: string;
  /** @default 'SecureString' */
  readonly type?: 'String' | 'StringList' | 'SecureString';
}

export interface FakeAwsOptions {
  /** SSM parameters by name, or a function answering for any name (undefined: the parameter does not exist). */
  readonly parameters?:
    | Readonly<Record<string, FakeParameter>>
    | ((name: string) => FakeParameter | undefined);
  /** Names whose read is denied, as IAM would without `ssm:GetParameters` on them. */
  readonly denied?: readonly string[];
  /** @default '123456789012' */
  readonly accountId?: string;
  /** @default 'us-east-1' */
  readonly region?: string;
}

export interface FakeAws {
  readonly url: string;
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startFakeAws(options: FakeAwsOptions = {}): Promise<FakeAws> {
  const accountId = options.accountId ?? '123456789012';
  const region = options.region ?? 'us-east-1';
  const denied = new Set(options.denied ?? []);
  const lookup = (name: string): FakeParameter | undefined => {
    const p = options.parameters;
    if (typeof p === 'function') return p(name);
    return p && Object.hasOwn(p, name) ? p[name] : undefined;
  };
  const arnOf = (name: string) => `arn:aws:ssm:${region}:${accountId}:parameter${name}`;
  const requests: string[] = [];

  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const json = (status: number, value: unknown) => {
        res.statusCode = status;
        res.setHeader('content-type', 'application/x-amz-json-1.1');
        res.end(JSON.stringify(value));
      };
      const xml = (status: number, text: string) => {
        res.statusCode = status;
        res.setHeader('content-type', 'text/xml');
        res.end(text);
      };
      if (target.startsWith('AmazonSSM.')) {
        const action = target.slice('AmazonSSM.'.length);
        const input = JSON.parse(body || '{}') as {
          Name?: string;
          Names?: string[];
          WithDecryption?: boolean;
        };
        const names = action === 'GetParameter' ? [input.Name ?? ''] : (input.Names ?? []);
        requests.push(`ssm:${action}:${names.join(',')}`);
        const refused = names.find((n) => denied.has(n));
        if (refused !== undefined) {
          json(400, {
            __type: 'AccessDeniedException',
            Message: `User: arn:aws:sts::${accountId}:assumed-role/test/fn is not authorized to perform: ssm:${action} on resource: ${arnOf(refused)} because no identity-based policy allows the ssm:${action} action`,
          });
          return;
        }
        const found = names.flatMap((Name) => {
          const p = lookup(Name);
          if (!p) return [];
          const Type = p.type ?? 'SecureString';
          // Without WithDecryption, SSM hands out a SecureString's ciphertext.
          const Value =
            Type === 'SecureString' && !input.WithDecryption
              ? Buffer.from(`ciphertext of ${Name}`).toString('base64')
              : p.value;
          return [{ Name, Type, Value, Version: 1, ARN: arnOf(Name) }];
        });
        if (action === 'GetParameter') {
          if (found.length === 0) json(400, { __type: 'ParameterNotFound', message: '' });
          else json(200, { Parameter: found[0] });
        } else if (action === 'GetParameters') {
          json(200, {
            Parameters: found,
            InvalidParameters: names.filter((n) => !found.some((p) => p.Name === n)),
          });
        } else json(400, { __type: 'UnknownOperationException', message: `${action} is not faked` });
        return;
      }
      const params = new URLSearchParams(body);
      const action = params.get('Action') ?? '';
      if (action === 'GetCallerIdentity') {
        requests.push(`sts:${action}`);
        xml(
          200,
          `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::${accountId}:user/test</Arn><UserId>AIDATEST</UserId><Account>${accountId}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
        );
        return;
      }
      requests.push(`cloudformation:${action}`);
      xml(
        400,
        `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>Stack with id ${params.get('StackName')} does not exist</Message></Error><RequestId>fake</RequestId></ErrorResponse>`,
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The environment of a child process that talks to the stand-in only: fake credentials, no profiles, no
 * instance metadata, every endpoint the deploy path calls pointed at `url`.
 */
export function fakeAwsEnv(url: string, home: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: home,
    AWS_ACCESS_KEY_ID: 'AKIAFAKEFAKEFAKEFAKE',
    AWS_SECRET_ACCESS_KEY: 'fake-secret-access-key',
    AWS_REGION: 'us-east-1',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_ENDPOINT_URL_SSM: url,
    AWS_ENDPOINT_URL_CLOUDFORMATION: url,
    AWS_ENDPOINT_URL_STS: url,
  };
}
