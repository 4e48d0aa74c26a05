// A real, OpenID Certified authorization server (oidc-provider, pinned in
// package.json) plus a protected resource, for tests/interop.rs.
//
//   node server.mjs        -> prints one JSON line when ready:
//                             {"issuer":"http://127.0.0.1:PORT","port":PORT,
//                              "post_only_issuer":"http://127.0.0.1:PORT/post-only"}
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
// Two issuers on the one port:
//   ISSUER                  every client below; token endpoint auth methods
//                           oidc-provider's default list (client_secret_basic,
//                           client_secret_jwt, client_secret_post,
//                           private_key_jwt, none); client credentials on.
//   ISSUER/post-only        a second provider mounted under a path, whose
//                           metadata lists only client_secret_post, with
//                           `post-client` alone. Its RFC 8414 metadata is at
//                           /post-only/.well-known/oauth-authorization-server
//                           (oidc-provider appends), not at RFC 8414 §3.1's
//                           /.well-known/oauth-authorization-server/post-only
//                           (404), so discovery falls back to OpenID's
//                           /post-only/.well-known/openid-configuration.
//
// Test-only endpoints (this is a test fixture, never a deployment):
//   GET  /api/me                 the protected resource for users (of
//                                either issuer): Bearer token -> 200
//                                {"sub":..} or 401 + WWW-Authenticate
//   GET  /api/service            the protected resource for machines: a
//                                client-credentials token for the resource
//                                `urn:interop:api` with scope `api:read` ->
//                                200 {"client_id":..,"aud":..,"scope":..};
//                                401 for an unknown or expired token, 403
//                                (insufficient_scope) for another audience or
//                                scope
//   GET  /test/stats?account=ID  counters for one account (see `emptyStats`);
//                                client-credentials traffic is counted under
//                                the request's `x-interop-test` header value,
//                                or `client:CLIENT_ID` without one
//   GET  /test/requests?tag=T    every request that carried the header
//                                `x-interop-test: T`: method, path, status
//   GET  /api/dpop, GET /test/dpop-stats, POST /test/dpop-rotate: see
//                                dpop.mjs (DPoP, nonces at both ends)
//   GET  /test/keys, POST /google/token, GET /api/machine: see keys.mjs
//                                (private_key_jwt clients, the JWT-bearer
//                                grant, a Google-shaped token endpoint)
//   POST /test/invalidate        form `token=ACCESS_TOKEN`: deletes that one
//                                access token (user or client credentials),
//                                as if it had expired. (The real revocation
//                                endpoint of oidc-provider revokes the whole
//                                grant, refresh tokens included, which RFC
//                                7009 §2.1 allows.)

import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

import { dpopClients, dpopFeature, dpopRoutes, instrumentDpop } from './dpop.mjs';
import { keyClients, keyRoutes, registerJwtBearer } from './keys.mjs';

const REDIRECT_URI = 'http://127.0.0.1/callback';
// RFC 6749 §2.3.1: client_secret_basic form-urlencodes id and secret before
// base64. This secret breaks any client that skips that step: a raw `:`
// splits it, a raw `+` decodes to a space, `%2B` to a `+`. (Appendix A allows
// only printable ASCII in a secret, and oidc-provider enforces that, so no
// non-ASCII character here.)
const BASIC_SECRET = `s3cr:t/+ %2B&=?#;@,~'"`;
const POST_SECRET = 'post-secret/+=&%';
const CC_SECRET = 'cc-secret:/+ %2B&=?';
// The one resource server (RFC 8707 resource indicator) that client
// credentials tokens can be issued for, and its scopes.
const API_RESOURCE = 'urn:interop:api';
const API_SCOPES = 'api:read api:write';
const API_TTL = 600;
const POST_ONLY_PATH = '/post-only';
// Requests carrying this header are logged under its value (/test/requests)
// and their client-credentials grants counted under it (/test/stats).
const TAG_HEADER = 'x-interop-test';

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

const basicClient = {
  ...common,
  client_id: 'basic-client',
  client_secret: BASIC_SECRET,
  token_endpoint_auth_method: 'client_secret_basic',
};
const postClient = {
  ...common,
  client_id: 'post-client',
  client_secret: POST_SECRET,
  token_endpoint_auth_method: 'client_secret_post',
};
const publicClient = {
  ...common,
  client_id: 'public-client',
  token_endpoint_auth_method: 'none',
};
// Machine to machine (RFC 6749 §4.4): no user, no refresh token.
const ccClient = {
  client_id: 'cc-client',
  client_secret: CC_SECRET,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
};

// A fresh configuration object per provider (oidc-provider consumes parts of
// it).
function configuration({ clients, clientAuthMethods }) {
  return {
    clients: clients.map((client) => ({ ...client })),
    ...(clientAuthMethods ? { clientAuthMethods } : {}),
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
      clientCredentials: { enabled: true },
      dPoP: dpopFeature,
      // On by default in oidc-provider 9, but every resource indicator is
      // rejected until getResourceServerInfo says otherwise. Without a
      // `resource`, a client-credentials token is still issued (opaque, no
      // audience); /api/service wants the audience, as a real resource
      // server would.
      resourceIndicators: {
        enabled: true,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator === API_RESOURCE) {
            return {
              scope: API_SCOPES,
              audience: API_RESOURCE,
              accessTokenTTL: API_TTL,
              accessTokenFormat: 'opaque',
            };
          }
          throw new errors.InvalidTarget();
        },
      },
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
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? API_TTL,
      Grant: 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    cookies: { keys: ['interop-test-cookie-key-not-a-secret'] },
  };
}

// ---- counters, per account ------------------------------------------------

const stats = new Map();
// token value -> account id, learnt from token responses, so that a failed
// refresh with a token that is gone (revoked grant) is still attributed.
const accountOfToken = new Map();
// x-interop-test value -> [{ method, path, status }]
const requestLog = new Map();

function emptyStats() {
  return {
    refresh_calls: 0, // token endpoint calls with grant_type=refresh_token
    refresh_success: 0,
    refresh_errors: {}, // error code -> count
    refresh_error_descriptions: [],
    code_exchanges: 0,
    cc_grants: 0, // successful grant_type=client_credentials calls
    cc_errors: {}, // error code -> count
    cc_scopes: [], // the `scope` of each client-credentials token response
    api_ok: 0,
    api_unauthorized: 0,
    api_forbidden: 0, // /api/service: a valid token for another audience/scope
    clients: [], // client ids seen on refresh and client-credentials calls
    // How the client authenticated on each refresh and client-credentials
    // call: client_secret_basic, client_secret_post or none. (oidc-provider
    // accepts Basic and the body alike for a client registered with either,
    // whatever its metadata lists, so only this shows what a client sent.)
    token_auth: [],
    // Calls to a revocation endpoint with one of this account's tokens:
    // { hint, client, auth, found (the kind of token the server found, or
    //   null), status }
    revocations: [],
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
  s.token_auth.push(authMethodOf(ctx));
}

/** The client authentication a request used, as RFC 8414 names it. */
function authMethodOf(ctx) {
  if (/^basic /i.test(ctx.get('authorization'))) return 'client_secret_basic';
  if (ctx.oidc?.params?.client_assertion) return 'private_key_jwt';
  if (ctx.oidc?.params?.client_secret) return 'client_secret_post';
  return 'none';
}

/** Where a client-credentials call is counted: its tag, else its client. */
function machineAccount(ctx) {
  const tag = ctx.get(TAG_HEADER);
  if (tag) return tag;
  const id = ctx.oidc?.client?.clientId;
  return id ? `client:${id}` : undefined;
}

function bearer(ctx) {
  return /^Bearer ([^\s]+)$/i.exec(ctx.get('authorization'))?.[1];
}

function unauthorized(ctx, value, s) {
  s.api_unauthorized += 1;
  ctx.status = 401;
  ctx.set(
    'WWW-Authenticate',
    value
      ? 'Bearer realm="interop", error="invalid_token", error_description="the access token is invalid or expired"'
      : 'Bearer realm="interop"',
  );
  ctx.body = { error: 'invalid_token' };
}

// ---- the providers -----------------------------------------------------------

/** Counters and the revocation log, for either provider. */
function instrument(provider) {
  provider.on('grant.success', (ctx) => {
    const { params, entities } = ctx.oidc;
    const body = ctx.body ?? {};
    if (params.grant_type === 'client_credentials') {
      const account = machineAccount(ctx);
      remember(body.access_token, account);
      const s = statsFor(account);
      s.cc_grants += 1;
      s.cc_scopes.push(body.scope ?? null);
      noteClient(s, ctx);
      return;
    }
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
    const code = err?.error ?? 'unknown';
    if (params.grant_type === 'client_credentials') {
      const s = statsFor(machineAccount(ctx));
      s.cc_errors[code] = (s.cc_errors[code] ?? 0) + 1;
      noteClient(s, ctx);
      return;
    }
    if (params.grant_type !== 'refresh_token') return;
    const account = ctx.oidc?.entities?.Account?.accountId
      ?? accountOfToken.get(params.refresh_token);
    const s = statsFor(account);
    s.refresh_calls += 1;
    s.refresh_errors[code] = (s.refresh_errors[code] ?? 0) + 1;
    s.refresh_error_descriptions.push(`${code}: ${err?.error_detail ?? err?.error_description ?? ''}`);
    noteClient(s, ctx);
  });

  provider.on('server_error', (_ctx, err) => {
    console.error('oidc-provider server_error:', err);
  });

  // After the revocation endpoint has answered: who asked, with which hint,
  // and what the server found (it answers 200 either way, RFC 7009 §2.2).
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route !== 'revocation') return;
    const { params, entities } = ctx.oidc;
    const token = params?.token;
    const account = typeof token === 'string' ? accountOfToken.get(token) : undefined;
    statsFor(account).revocations.push({
      hint: params?.token_type_hint ?? null,
      client: ctx.oidc.client?.clientId ?? null,
      auth: authMethodOf(ctx),
      found: ['RefreshToken', 'AccessToken', 'ClientCredentials'].find((kind) => entities?.[kind]) ?? null,
      status: ctx.status,
    });
  });
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;
  const postOnlyIssuer = `${issuer}${POST_ONLY_PATH}`;
  const provider = new Provider(
    issuer,
    configuration({ clients: [basicClient, postClient, publicClient, ccClient, ...keyClients, ...dpopClients] }),
  );
  registerJwtBearer(provider, `${issuer}/token`);
  instrumentDpop(provider);
  const postOnly = new Provider(
    postOnlyIssuer,
    configuration({ clients: [postClient], clientAuthMethods: ['client_secret_post'] }),
  );
  instrument(provider);
  instrument(postOnly);
  // The resource server trusts both issuers (each has its own in-memory
  // store).
  const findAccessToken = async (value) => (await provider.AccessToken.find(value))
    ?? (await postOnly.AccessToken.find(value));

  // The test-only routes; they run before the main provider's own routes.
  provider.use(async (ctx, next) => {
    if (await keyRoutes(ctx, provider, issuer)) return;
    if (await dpopRoutes(ctx, provider, issuer)) return;
    if (ctx.path === '/api/me') {
      if (ctx.method !== 'GET') {
        ctx.status = 405;
        return;
      }
      const value = bearer(ctx);
      const token = value ? await findAccessToken(value) : undefined;
      if (!token || token.isExpired) {
        unauthorized(ctx, value, statsFor(accountOfToken.get(value)));
        return;
      }
      statsFor(token.accountId).api_ok += 1;
      ctx.body = { sub: token.accountId, client_id: token.clientId, scope: token.scope };
      return;
    }

    if (ctx.path === '/api/service') {
      if (ctx.method !== 'GET') {
        ctx.status = 405;
        return;
      }
      // Client-credentials tokens are their own model in oidc-provider
      // (ClientCredentials, no accountId), not AccessToken.
      const value = bearer(ctx);
      const token = value ? await provider.ClientCredentials.find(value) : undefined;
      const s = statsFor(accountOfToken.get(value) ?? (token && `client:${token.clientId}`));
      if (!token || token.isExpired) {
        unauthorized(ctx, value, s);
        return;
      }
      const audiences = [token.aud ?? []].flat();
      const scopes = new Set((token.scope ?? '').split(' '));
      if (!audiences.includes(API_RESOURCE) || !scopes.has('api:read')) {
        s.api_forbidden += 1;
        ctx.status = 403;
        ctx.set('WWW-Authenticate', 'Bearer realm="interop", error="insufficient_scope", scope="api:read"');
        ctx.body = { error: 'insufficient_scope', aud: token.aud ?? null, scope: token.scope ?? null };
        return;
      }
      s.api_ok += 1;
      ctx.body = { client_id: token.clientId, aud: token.aud, scope: token.scope };
      return;
    }

    if (ctx.path === '/test/stats' && ctx.method === 'GET') {
      const account = ctx.query.account;
      ctx.body = typeof account === 'string'
        ? (stats.get(account) ?? emptyStats())
        : Object.fromEntries(stats);
      return;
    }

    if (ctx.path === '/test/requests' && ctx.method === 'GET') {
      const { tag } = ctx.query;
      ctx.body = typeof tag === 'string' ? (requestLog.get(tag) ?? []) : [];
      return;
    }

    if (ctx.path === '/test/invalidate' && ctx.method === 'POST') {
      const body = new URLSearchParams(await readBody(ctx.req));
      const value = body.get('token') ?? '';
      const token = (await findAccessToken(value))
        ?? (await provider.ClientCredentials.find(value));
      if (token) await token.destroy();
      ctx.body = { invalidated: Boolean(token) };
      return;
    }

    await next();
  });

  const main = provider.callback();
  const mounted = postOnly.callback();
  server.on('request', (req, res) => {
    logTagged(req, res);
    const { pathname } = new URL(req.url, issuer);
    if (pathname === POST_ONLY_PATH || pathname.startsWith(`${POST_ONLY_PATH}/`)) {
      // Mounting as express/koa-mount do: oidc-provider derives its mount
      // path from `req.originalUrl` minus `req.url`.
      req.originalUrl = req.url;
      req.url = req.url.slice(POST_ONLY_PATH.length) || '/';
      mounted(req, res);
      return;
    }
    main(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer, port: actualPort, post_only_issuer: postOnlyIssuer })}\n`);
});

/** Logs a request that carries the tag header, with the status it gets. */
function logTagged(req, res) {
  const tag = req.headers[TAG_HEADER];
  if (typeof tag !== 'string' || !tag) return;
  const entry = { method: req.method, path: req.url.split('?')[0], status: null };
  let log = requestLog.get(tag);
  if (!log) {
    log = [];
    requestLog.set(tag, log);
  }
  log.push(entry);
  // Set before the first byte of the answer leaves (Node calls writeHead
  // for implicit headers too), so the log is complete when the client
  // has the answer.
  const { writeHead } = res;
  res.writeHead = function logStatus(status, ...rest) {
    entry.status = status;
    return writeHead.call(this, status, ...rest);
  };
}

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
