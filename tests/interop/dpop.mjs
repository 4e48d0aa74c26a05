// DPoP (RFC 9449) for server.mjs: oidc-provider's DPoP feature with nonces
// required at the token endpoint, a public client whose access tokens must be
// DPoP-bound, and a protected resource, GET /api/dpop, that verifies every
// proof itself with node:crypto, as a resource server of its own would:
// the `DPoP` scheme, the access token (known, not expired), the proof's
// signature with the key in its header, `typ`, `alg`, `htm`, `htu`, a fresh
// `iat`, a `jti` never seen, `ath`, its own nonce, and that the token's
// `cnf.jkt` (oidc-provider's AccessToken#jkt) is the RFC 7638 thumbprint of
// the proof's key.
//
// The resource server's nonces are its own (not oidc-provider's), kept per
// key thumbprint so that tests sharing one server do not disturb each other.
// A nonce rotates every ROTATE_EVERY successful requests, and the last
// NONCE_WINDOW nonces are accepted: one a client was just told stays good
// for more than 2 * ROTATE_EVERY further requests, more than a herd of 200
// has in flight, so a client's one retry with the nonce it was given cannot
// meet a nonce that went stale meanwhile. POST /test/dpop-rotate makes every
// nonce a key knows stale at once, to exercise the retry under a herd.
//
// Counters, per key thumbprint (jkt): GET /test/dpop-stats?jkt=JKT (see
// `emptyStats`).

import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';

export const DPOP_CLIENT = 'dpop-client';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const ROTATE_EVERY = 100;
const NONCE_WINDOW = 3;
// How far a proof's `iat` may be from the server's clock, seconds.
const IAT_SKEW = 60;
const ALGS = { ES256: 'ec', EdDSA: 'okp', RS256: 'rsa', PS256: 'rsa' };

/** `features.dPoP` for oidc-provider 9 (lib/helpers/defaults.js). */
export const dpopFeature = {
  enabled: true,
  // oidc-provider derives its token-endpoint nonces from this (HKDF, 60 s
  // steps); it must be a 32-byte Buffer.
  nonceSecret: randomBytes(32),
  // A nonce at every DPoP proof the provider checks: the token endpoint.
  requireNonce: () => true,
};

/** The public DPoP client: PKCE, no client authentication, bound tokens. */
export const dpopClients = [{
  client_id: DPOP_CLIENT,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: [REDIRECT_URI],
  token_endpoint_auth_method: 'none',
  dpop_bound_access_tokens: true,
}];

// ---- counters ----------------------------------------------------------------

const stats = new Map();

function emptyStats() {
  return {
    rs_verified: 0, // /api/dpop: 200s, every check passed
    rs_nonce_challenges: 0, // /api/dpop: 401 use_dpop_nonce (no or a stale nonce)
    rs_token_rejected: 0, // /api/dpop: a good proof, an unknown or expired token
    rs_failures: {}, // /api/dpop: anything else, by reason (none expected)
    rs_nonce_rotations: 0,
    token_issued: {}, // grant_type -> successful token responses with a token bound to this jkt
    token_nonce_challenges: 0, // token endpoint: use_dpop_nonce
    token_invalid_grant: 0, // token endpoint: invalid_grant (reuse detection among them)
    token_errors: {}, // token endpoint: every error, by code
    token_error_descriptions: [],
    accounts: [], // accounts whose tokens were bound to this jkt
  };
}

function statsFor(jkt) {
  const key = jkt ?? '(none)';
  let s = stats.get(key);
  if (!s) {
    s = emptyStats();
    stats.set(key, s);
  }
  return s;
}

function bump(map, key) {
  map[key] = (map[key] ?? 0) + 1;
}

// ---- JOSE, with node:crypto only ---------------------------------------------

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const sha256 = (data) => createHash('sha256').update(data).digest();

/** RFC 7638: the SHA-256 thumbprint of a public JWK's required members. */
export function thumbprint(jwk) {
  const members = {
    EC: ['crv', 'kty', 'x', 'y'],
    OKP: ['crv', 'kty', 'x'],
    RSA: ['e', 'kty', 'n'],
  }[jwk?.kty];
  if (!members) throw new Error(`unsupported kty ${jwk?.kty}`);
  const canonical = `{${members.map((m) => {
    if (typeof jwk[m] !== 'string') throw new Error(`jwk lacks ${m}`);
    return `${JSON.stringify(m)}:${JSON.stringify(jwk[m])}`;
  }).join(',')}}`;
  return b64url(sha256(canonical));
}

/** Decodes a compact JWS without checking it; throws a reason. */
function decode(jws) {
  const parts = String(jws ?? '').split('.');
  if (parts.length !== 3) throw new Error('not_compact_jws');
  try {
    return {
      header: JSON.parse(Buffer.from(parts[0], 'base64url')),
      claims: JSON.parse(Buffer.from(parts[1], 'base64url')),
      input: Buffer.from(`${parts[0]}.${parts[1]}`),
      signature: Buffer.from(parts[2], 'base64url'),
    };
  } catch {
    throw new Error('not_json');
  }
}

/** The jkt a proof names (unverified): for counting, never for trust. */
function claimedJkt(proof) {
  try {
    return thumbprint(decode(proof).header.jwk);
  } catch {
    return undefined;
  }
}

function signatureValid({ header, input, signature }, key) {
  switch (header.alg) {
    case 'ES256':
      return verify('sha256', input, { key, dsaEncoding: 'ieee-p1363' }, signature);
    case 'EdDSA':
      return verify(null, input, key, signature);
    case 'RS256':
      return verify('sha256', input, key, signature);
    case 'PS256':
      return verify('sha256', input, { key, padding: 6, saltLength: 32 }, signature);
    default:
      return false;
  }
}

// ---- the resource server -----------------------------------------------------

const seenJti = new Set();
const nonces = new Map(); // jkt -> { accepted: [newest, ...], successes }

function nonceState(jkt) {
  let state = nonces.get(jkt);
  if (!state) {
    state = { accepted: [b64url(randomBytes(16))], successes: 0 };
    nonces.set(jkt, state);
  }
  return state;
}

function rotate(jkt, s) {
  const state = nonceState(jkt);
  state.accepted = [b64url(randomBytes(16)), ...state.accepted].slice(0, NONCE_WINDOW);
  s.rs_nonce_rotations += 1;
}

/**
 * Checks a proof for `GET /api/dpop` with access token `at`; returns the
 * thumbprint of its key. Throws an Error whose message is the reason.
 */
function checkProof(ctx, proof, at, expectedHtu) {
  const jws = decode(proof);
  const { header, claims } = jws;
  if (header.typ !== 'dpop+jwt') throw new Error('typ');
  const kty = ALGS[header.alg];
  if (!kty) throw new Error('alg');
  const { jwk } = header;
  if (typeof jwk !== 'object' || jwk === null || 'd' in jwk || 'p' in jwk) throw new Error('jwk');
  let key;
  try {
    key = createPublicKey({ key: jwk, format: 'jwk' });
  } catch {
    throw new Error('jwk');
  }
  if (key.asymmetricKeyType !== (kty === 'okp' ? 'ed25519' : kty)) throw new Error('alg_key_mismatch');
  if (!signatureValid(jws, key)) throw new Error('signature');
  if (claims.htm !== ctx.method) throw new Error('htm');
  let htu;
  try {
    htu = new URL(claims.htu);
  } catch {
    throw new Error('htu');
  }
  htu.search = '';
  htu.hash = '';
  if (htu.href !== expectedHtu) throw new Error('htu');
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.iat !== 'number' || Math.abs(now - claims.iat) > IAT_SKEW) throw new Error('iat');
  if (typeof claims.jti !== 'string' || claims.jti.length < 16) throw new Error('jti');
  if (seenJti.has(claims.jti)) throw new Error('jti_reused');
  seenJti.add(claims.jti);
  if (claims.ath !== b64url(sha256(at))) throw new Error('ath');
  return { jkt: thumbprint(jwk), nonce: claims.nonce };
}

function challenge(ctx, status, error, description, nonce) {
  ctx.status = status;
  const params = [`algs="${Object.keys(ALGS).join(' ')}"`];
  if (error) params.unshift(`error="${error}"`, `error_description="${description}"`);
  ctx.set('WWW-Authenticate', `DPoP ${params.join(', ')}`);
  if (nonce) ctx.set('DPoP-Nonce', nonce);
  ctx.body = { error: error ?? 'invalid_request' };
}

async function apiDpop(ctx, provider, issuer) {
  const expectedHtu = new URL('/api/dpop', issuer).href;
  const at = /^DPoP ([A-Za-z0-9\-._~+/]+=*)$/i.exec(ctx.get('authorization'))?.[1];
  const proofs = ctx.req.headers.dpop;
  const proof = typeof proofs === 'string' ? proofs : undefined;
  const jkt = claimedJkt(proof);
  const s = statsFor(jkt);
  if (!at || !proof) {
    bump(s.rs_failures, !at ? 'not_dpop_scheme' : 'no_proof');
    challenge(ctx, 401, 'invalid_token', 'a DPoP access token and proof are required');
    return;
  }
  let checked;
  try {
    checked = checkProof(ctx, proof, at, expectedHtu);
  } catch (err) {
    bump(s.rs_failures, `proof_${err.message}`);
    challenge(ctx, 401, 'invalid_dpop_proof', `the DPoP proof is invalid (${err.message})`);
    return;
  }
  const state = nonceState(checked.jkt);
  const current = state.accepted[0];
  if (typeof checked.nonce !== 'string' || !state.accepted.includes(checked.nonce)) {
    s.rs_nonce_challenges += 1;
    challenge(ctx, 401, 'use_dpop_nonce', 'the resource server requires a nonce in the DPoP proof', current);
    return;
  }
  const token = await provider.AccessToken.find(at);
  if (!token || token.isExpired) {
    s.rs_token_rejected += 1;
    challenge(ctx, 401, 'invalid_token', 'the access token is invalid or expired', current);
    return;
  }
  if (token.jkt !== checked.jkt) {
    bump(s.rs_failures, token.jkt ? 'jkt_mismatch' : 'token_not_bound');
    challenge(ctx, 401, 'invalid_token', 'the access token is not bound to this key', current);
    return;
  }
  s.rs_verified += 1;
  state.successes += 1;
  if (state.successes % ROTATE_EVERY === 0) rotate(checked.jkt, s);
  ctx.set('DPoP-Nonce', state.accepted[0]);
  ctx.body = { sub: token.accountId, client_id: token.clientId, jkt: token.jkt };
}

/** Counts what the token endpoint did with DPoP proofs, per jkt. */
export function instrumentDpop(provider) {
  provider.on('grant.success', (ctx) => {
    const at = ctx.oidc.entities.AccessToken;
    if (!at?.jkt) return;
    const s = statsFor(at.jkt);
    bump(s.token_issued, ctx.oidc.params.grant_type);
    if (at.accountId && !s.accounts.includes(at.accountId)) s.accounts.push(at.accountId);
  });
  provider.on('grant.error', (ctx, err) => {
    const proof = ctx.get('DPoP');
    if (!proof) return;
    const s = statsFor(claimedJkt(proof));
    const code = err?.error ?? 'unknown';
    bump(s.token_errors, code);
    s.token_error_descriptions.push(`${code}: ${err?.error_description ?? ''}`);
    if (code === 'use_dpop_nonce') s.token_nonce_challenges += 1;
    if (code === 'invalid_grant') s.token_invalid_grant += 1;
  });
}

/**
 * GET /api/dpop, GET /test/dpop-stats?jkt=, POST /test/dpop-rotate?jkt=
 * (makes every nonce the key knows stale). Returns true when it answered.
 */
export async function dpopRoutes(ctx, provider, issuer) {
  if (ctx.path === '/api/dpop') {
    if (ctx.method !== 'GET') {
      ctx.status = 405;
      return true;
    }
    await apiDpop(ctx, provider, issuer);
    return true;
  }
  if (ctx.path === '/test/dpop-stats' && ctx.method === 'GET') {
    const { jkt } = ctx.query;
    ctx.body = typeof jkt === 'string' ? (stats.get(jkt) ?? emptyStats()) : Object.fromEntries(stats);
    return true;
  }
  if (ctx.path === '/test/dpop-rotate' && ctx.method === 'POST') {
    const { jkt } = ctx.query;
    if (typeof jkt !== 'string') {
      ctx.status = 400;
      return true;
    }
    const s = statsFor(jkt);
    for (let i = 0; i < NONCE_WINDOW; i += 1) rotate(jkt, s);
    ctx.body = { rotated: NONCE_WINDOW };
    return true;
  }
  return false;
}
