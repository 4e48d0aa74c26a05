// Key-based clients for server.mjs: private_key_jwt clients (ES256, RS256),
// a client of the JWT-bearer grant (RFC 7523 §2.1, registered as an extra
// grant type), and a Google-shaped token endpoint for service-account key
// files. The keys are made at start-up; the test fetches the private halves
// from GET /test/keys (a test fixture: never do this in a deployment).

import {
  createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, verify,
} from 'node:crypto';

import { errors } from 'oidc-provider';

export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const SERVICE_ACCOUNT = 'robot@interop.example';
const GOOGLE_EMAIL = 'robot@interop-demo.iam.gserviceaccount.com';
const GOOGLE_KID = randomBytes(8).toString('hex');

/**
 * A new key pair as KeyObjects of their own. Node 20 can deadlock when a
 * garbage collection destroys generateKeyPairSync's job while a JWK export
 * of the key it made holds that key's lock (seen here: server.mjs hung at
 * start-up in ExportJWKRsaKey -> GC -> ~KeyGenJob -> mutex). So the job
 * hands over PEM, and the exported keys are new objects parsed from it.
 */
export function newKeyPair(alg) {
  const encoding = {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  };
  const pems = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256', ...encoding })
    : generateKeyPairSync('rsa', { modulusLength: 2048, ...encoding });
  return { privateKey: createPrivateKey(pems.privateKey), publicKey: createPublicKey(pems.publicKey) };
}

function keyPair(alg, kid) {
  const { privateKey, publicKey } = newKeyPair(alg);
  return {
    alg,
    kid,
    publicKey,
    publicJwk: { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' },
    privateJwk: { ...privateKey.export({ format: 'jwk' }), kid, alg },
    pkcs8Pem: privateKey.export({ format: 'pem', type: 'pkcs8' }),
  };
}

const keys = {
  es256: keyPair('ES256', 'es256-key-1'),
  rs256: keyPair('RS256', 'rs256-key-1'),
  bearer: keyPair('ES256', 'bearer-key-1'),
  google: keyPair('RS256', GOOGLE_KID),
};

function keyClient(id, key) {
  return {
    client_id: id,
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    response_types: ['code'],
    redirect_uris: [REDIRECT_URI],
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: key.alg,
    jwks: { keys: [key.publicJwk] },
  };
}

/** The clients to register with the main provider. */
export const keyClients = [
  keyClient('es256-key-client', keys.es256),
  keyClient('rs256-key-client', keys.rs256),
  {
    client_id: 'jwt-bearer-client',
    grant_types: [JWT_BEARER],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'none',
  },
];

/** Assertion checks, shared by both grant endpoints. Throws a message. */
function checkAssertion(assertion, { key, iss, aud, seen }) {
  const parts = String(assertion ?? '').split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  if (header.alg !== key.alg) throw new Error(`alg ${header.alg}, want ${key.alg}`);
  if (header.kid !== key.kid) throw new Error(`kid ${header.kid}, want ${key.kid}`);
  const ok = verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    key.alg === 'ES256' ? { key: key.publicKey, dsaEncoding: 'ieee-p1363' } : key.publicKey,
    Buffer.from(parts[2], 'base64url'),
  );
  if (!ok) throw new Error('the signature does not verify');
  const now = Math.floor(Date.now() / 1000);
  if (claims.iss !== iss) throw new Error(`iss ${claims.iss}`);
  if (claims.aud !== aud) throw new Error(`aud ${claims.aud}, want ${aud}`);
  if (!(claims.exp > now)) throw new Error('expired');
  if (!(claims.iat <= now + 5)) throw new Error('issued in the future');
  if (!(claims.exp - claims.iat <= 3600)) throw new Error('lives longer than an hour');
  if (typeof claims.jti !== 'string' || seen.has(claims.jti)) throw new Error('jti missing or reused');
  seen.add(claims.jti);
  return claims;
}

const bearerStats = { grants: 0, errors: [], subjects: [] };
const googleStats = { grants: 0, errors: [], scopes: [] };
const seenJti = new Set();

/**
 * Registers the JWT-bearer grant with `provider` (whose token endpoint is
 * `tokenEndpoint`): a valid assertion from SERVICE_ACCOUNT, signed by the
 * bearer key, gets a client-credentials-like access token.
 */
export function registerJwtBearer(provider, tokenEndpoint) {
  provider.registerGrantType(JWT_BEARER, async (ctx) => {
    let claims;
    try {
      claims = checkAssertion(ctx.oidc.params.assertion, {
        key: keys.bearer, iss: SERVICE_ACCOUNT, aud: tokenEndpoint, seen: seenJti,
      });
    } catch (err) {
      bearerStats.errors.push(err.message);
      throw new errors.InvalidGrant(`assertion rejected: ${err.message}`);
    }
    const token = new provider.ClientCredentials({ client: ctx.oidc.client, scope: 'api:read' });
    const value = await token.save();
    bearerStats.grants += 1;
    bearerStats.subjects.push(claims.sub ?? null);
    ctx.body = { access_token: value, expires_in: token.expiration, token_type: 'Bearer', scope: token.scope };
  }, ['assertion', 'scope']);
}

/** Reads a small form body. */
async function formOf(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The test-only routes: GET /test/keys, POST /google/token (Google's
 * documented JWT-bearer exchange: no client authentication, RS256, the
 * scopes in the assertion), GET /api/machine (accepts client-credentials
 * and JWT-bearer tokens). Returns true when it answered.
 */
export async function keyRoutes(ctx, provider, issuer) {
  if (ctx.path === '/test/keys' && ctx.method === 'GET') {
    ctx.body = {
      es256: { private_jwk: keys.es256.privateJwk, kid: keys.es256.kid },
      rs256: { pkcs8_pem: keys.rs256.pkcs8Pem, private_jwk: keys.rs256.privateJwk, kid: keys.rs256.kid },
      bearer: { private_jwk: keys.bearer.privateJwk, iss: SERVICE_ACCOUNT },
      google_key_file: {
        type: 'service_account',
        project_id: 'interop-demo',
        private_key_id: GOOGLE_KID,
        private_key: keys.google.pkcs8Pem,
        client_email: GOOGLE_EMAIL,
        client_id: '100000000000000000001',
        token_uri: `${issuer}/google/token`,
      },
      bearer_stats: bearerStats,
      google_stats: googleStats,
    };
    return true;
  }
  if (ctx.path === '/google/token' && ctx.method === 'POST') {
    const form = await formOf(ctx.req);
    try {
      if (form.get('grant_type') !== JWT_BEARER) throw new Error('unsupported grant_type');
      if (ctx.get('authorization') || form.has('client_id')) throw new Error('unexpected client authentication');
      const claims = checkAssertion(form.get('assertion'), {
        key: keys.google, iss: GOOGLE_EMAIL, aud: `${issuer}/google/token`, seen: seenJti,
      });
      if (typeof claims.scope !== 'string' || !claims.scope) throw new Error('no scope claim');
      googleStats.grants += 1;
      googleStats.scopes.push(claims.scope);
      ctx.body = { access_token: `ya29.${randomBytes(16).toString('hex')}`, expires_in: 3599, token_type: 'Bearer' };
    } catch (err) {
      googleStats.errors.push(err.message);
      ctx.status = 400;
      ctx.body = { error: 'invalid_grant', error_description: err.message };
    }
    return true;
  }
  if (ctx.path === '/api/machine' && ctx.method === 'GET') {
    const value = /^Bearer ([^\s]+)$/i.exec(ctx.get('authorization'))?.[1];
    const token = value ? await provider.ClientCredentials.find(value) : undefined;
    if (!token || token.isExpired) {
      ctx.status = 401;
      ctx.set('WWW-Authenticate', 'Bearer realm="interop", error="invalid_token"');
      ctx.body = { error: 'invalid_token' };
      return true;
    }
    ctx.body = { client_id: token.clientId };
    return true;
  }
  return false;
}
