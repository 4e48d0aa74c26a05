// A real, OpenID Certified authorization server (oidc-provider, pinned in
// package.json) plus a protected resource, for tests/interop.rs.
//
//   node server.mjs        -> prints one JSON line when ready:
//                             {"issuer":"http://127.0.0.1:PORT","port":PORT}
//
// Environment:
//   PORT=0                  port to listen on (0: a free one)
//   ACCESS_TOKEN_TTL=4      default access-token lifetime in seconds
//   EXIT_ON_STDIN_EOF=1     exit when stdin closes (the Rust harness sets it,
//                           so the server never outlives the test process)
//
// A login (account id) that ends in `-ttlN` gets access tokens that live N
// seconds instead (1..86400), so one server serves tests that need
// short-lived and long-lived tokens alike.
//
// Test-only endpoints (this is a test fixture, never a deployment):
//   GET  /api/me                 the protected resource: Bearer token ->
//                                200 {"sub":..} or 401 + WWW-Authenticate
//   GET  /test/stats?account=ID  counters for one account (see `emptyStats`)
//   POST /test/invalidate        form `token=ACCESS_TOKEN`: deletes that one
//                                access token, as if it had expired. (The
//                                real revocation endpoint of oidc-provider
//                                revokes the whole grant, refresh tokens
//                                included, which RFC 7009 §2.1 allows.)

import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const REDIRECT_URI = 'http://127.0.0.1/callback';
// RFC 6749 §2.3.1: client_secret_basic form-urlencodes id and secret before
// base64. This secret breaks any client that skips that step: a raw `:`
// splits it, a raw `+` decodes to a space, `%2B` to a `+`. (Appendix A allows
// only printable ASCII in a secret, and oidc-provider enforces that, so no
// non-ASCII character here.)
const BASIC_SECRET = `s3cr:t/+ %2B&=?#;@,~'"`;
const POST_SECRET = 'post-secret/+=&%';

const defaultTtl = positiveInt(process.env.ACCESS_TOKEN_TTL, 4);
const port = positiveInt(process.env.PORT, 0, true);

function positiveInt(value, fallback, zeroOk = false) {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1)) {
    throw new Error(`not a ${zeroOk ? 'non-negative' : 'positive'} integer: ${value}`);
  }
  return n;
}

function ttlFor(accountId) {
  const m = /-ttl(\d+)$/.exec(accountId ?? '');
  if (m) {
    const n = Number(m[1]);
    if (n >= 1 && n <= 86400) return n;
  }
  return defaultTtl;
}

const common = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
};

const configuration = {
  clients: [
    {
      ...common,
      client_id: 'basic-client',
      client_secret: BASIC_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      ...common,
      client_id: 'post-client',
      client_secret: POST_SECRET,
      token_endpoint_auth_method: 'client_secret_post',
    },
    {
      ...common,
      client_id: 'public-client',
      token_endpoint_auth_method: 'none',
    },
  ],
  // Any login is accepted by devInteractions; the account is just its id.
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
  },
  // Rotate on every use, for every client (the default rotates only for
  // public clients, or late in the refresh token's life). A rotated
  // (consumed) refresh token presented again revokes the whole grant:
  // lib/actions/grants/refresh_token.js, `if (refreshToken.consumed)`.
  rotateRefreshToken: true,
  // Refresh tokens whenever the client may use them (the default also wants
  // the offline_access scope; the driver asks for it anyway).
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ttl: {
    AccessToken: (_ctx, token) => ttlFor(token.accountId),
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
  cookies: { keys: ['interop-test-cookie-key-not-a-secret'] },
};

// ---- counters, per account ------------------------------------------------

const stats = new Map();
// token value -> account id, learnt from token responses, so that a failed
// refresh with a token that is gone (revoked grant) is still attributed.
const accountOfToken = new Map();

function emptyStats() {
  return {
    refresh_calls: 0, // token endpoint calls with grant_type=refresh_token
    refresh_success: 0,
    refresh_errors: {}, // error code -> count
    refresh_error_descriptions: [],
    code_exchanges: 0,
    api_ok: 0,
    api_unauthorized: 0,
    clients: [], // client ids seen on refresh calls
  };
}

function statsFor(account) {
  const key = account ?? '(unknown)';
  let s = stats.get(key);
  if (!s) {
    s = emptyStats();
    stats.set(key, s);
  }
  return s;
}

function remember(token, account) {
  if (typeof token === 'string' && account) {
    accountOfToken.set(token, account);
  }
}

function noteClient(s, ctx) {
  const id = ctx.oidc?.client?.clientId;
  if (id && !s.clients.includes(id)) s.clients.push(id);
}

// ---- the server ------------------------------------------------------------

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;
  const provider = new Provider(issuer, configuration);

  provider.on('grant.success', (ctx) => {
    const { params, entities } = ctx.oidc;
    const body = ctx.body ?? {};
    const account = entities.Account?.accountId
      ?? accountOfToken.get(params.refresh_token);
    remember(body.access_token, account);
    remember(body.refresh_token, account);
    const s = statsFor(account);
    if (params.grant_type === 'refresh_token') {
      s.refresh_calls += 1;
      s.refresh_success += 1;
      noteClient(s, ctx);
    } else if (params.grant_type === 'authorization_code') {
      s.code_exchanges += 1;
    }
  });

  provider.on('grant.error', (ctx, err) => {
    const params = ctx.oidc?.params ?? {};
    if (params.grant_type !== 'refresh_token') return;
    const account = ctx.oidc?.entities?.Account?.accountId
      ?? accountOfToken.get(params.refresh_token);
    const s = statsFor(account);
    s.refresh_calls += 1;
    const code = err?.error ?? 'unknown';
    s.refresh_errors[code] = (s.refresh_errors[code] ?? 0) + 1;
    s.refresh_error_descriptions.push(`${code}: ${err?.error_detail ?? err?.error_description ?? ''}`);
    noteClient(s, ctx);
  });

  provider.on('server_error', (_ctx, err) => {
    console.error('oidc-provider server_error:', err);
  });

  // Runs before the provider's own routes.
  provider.use(async (ctx, next) => {
    if (ctx.path === '/api/me') {
      if (ctx.method !== 'GET') {
        ctx.status = 405;
        return;
      }
      const m = /^Bearer ([^\s]+)$/i.exec(ctx.get('authorization'));
      const value = m?.[1];
      const token = value ? await provider.AccessToken.find(value) : undefined;
      if (!token || token.isExpired) {
        statsFor(accountOfToken.get(value)).api_unauthorized += 1;
        ctx.status = 401;
        ctx.set(
          'WWW-Authenticate',
          value
            ? 'Bearer realm="interop", error="invalid_token", error_description="the access token is invalid or expired"'
            : 'Bearer realm="interop"',
        );
        ctx.body = { error: 'invalid_token' };
        return;
      }
      statsFor(token.accountId).api_ok += 1;
      ctx.body = { sub: token.accountId, client_id: token.clientId, scope: token.scope };
      return;
    }

    if (ctx.path === '/test/stats' && ctx.method === 'GET') {
      const account = ctx.query.account;
      ctx.body = typeof account === 'string'
        ? (stats.get(account) ?? emptyStats())
        : Object.fromEntries(stats);
      return;
    }

    if (ctx.path === '/test/invalidate' && ctx.method === 'POST') {
      const body = new URLSearchParams(await readBody(ctx.req));
      const token = await provider.AccessToken.find(body.get('token') ?? '');
      if (token) await token.destroy();
      ctx.body = { invalidated: Boolean(token) };
      return;
    }

    await next();
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer, port: actualPort })}\n`);
});

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

if (process.env.EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
