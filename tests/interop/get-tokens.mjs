// Gets a first token pair from the interop server without a person: drives
// the real authorization code flow with PKCE (S256) over HTTP, through
// oidc-provider's devInteractions login and consent forms, then exchanges the
// code at the token endpoint with the client's authentication method.
//
//   node get-tokens.mjs ISSUER CLIENT_ID [CLIENT_SECRET] [AUTH_METHOD] [--login=NAME]
//
// AUTH_METHOD: client_secret_basic (default with a secret), client_secret_post,
// private_key_jwt (the private JWK, with its alg and kid, in the environment
// variable CLIENT_KEY_JWK), or none (default without a secret; pass "" as
// CLIENT_SECRET to give a method without a secret). Prints the token endpoint's JSON response on stdout.
//
// DPoP (RFC 9449): with --dpop, or a private JWK in DPOP_KEY_JWK, the
// authorization request carries `dpop_jkt` and the code exchange a DPoP
// proof (ES256 for a new key), sent once more with the server's nonce when
// it answers `use_dpop_nonce`; the printed JSON then also has
// `dpop_private_jwk`, the key the tokens are bound to (a test key).
// Needs only Node >= 20 (global fetch); no packages.
//
// Environment: REDIRECT_URI (default http://127.0.0.1/callback; it is never
// contacted: the code is read from the Location header).

import {
  createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign,
} from 'node:crypto';

const OVERALL_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_STEPS = 20;

const timer = setTimeout(() => fail(`gave up after ${OVERALL_TIMEOUT_MS} ms`), OVERALL_TIMEOUT_MS);
timer.unref();

function fail(message) {
  process.stderr.write(`get-tokens: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
const flags = Object.fromEntries(
  args.filter((a) => a.startsWith('--')).map((a) => {
    const [k, ...v] = a.slice(2).split('=');
    return [k, v.join('=')];
  }),
);
const [issuer, clientId, clientSecretArg, authMethodArg] = args.filter((a) => !a.startsWith('--'));
if (!issuer || !clientId) {
  fail('usage: node get-tokens.mjs ISSUER CLIENT_ID [CLIENT_SECRET] [AUTH_METHOD] [--login=NAME]');
}
const clientSecret = clientSecretArg || undefined;
const authMethod = authMethodArg || (clientSecret ? 'client_secret_basic' : 'none');
const login = flags.login || 'alice';
const redirectUri = process.env.REDIRECT_URI || 'http://127.0.0.1/callback';

/** RFC 6749 appendix B: application/x-www-form-urlencoded, as §2.3.1 wants. */
function formEncode(value) {
  return new URLSearchParams([['x', value]]).toString().slice(2);
}

// ---- a minimal cookie jar (name + path; all cookies are for the issuer) ----

const jar = new Map(); // `${path}\n${name}` -> { name, value, path }

function storeCookies(response, requestUrl) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';').map((s) => s.trim());
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    let path = new URL(requestUrl).pathname.replace(/\/[^/]*$/, '') || '/';
    let expired = false;
    for (const attr of attrs) {
      const [k, ...v] = attr.split('=');
      const key = k.toLowerCase();
      const val = v.join('=');
      if (key === 'path') path = val || '/';
      if (key === 'max-age' && Number(val) <= 0) expired = true;
      if (key === 'expires' && Date.parse(val) <= Date.now()) expired = true;
    }
    const id = `${path}\n${name}`;
    if (expired || value === '') jar.delete(id);
    else jar.set(id, { name, value, path });
  }
}

function cookieHeader(url) {
  const { pathname } = new URL(url);
  const matching = [...jar.values()]
    .filter(({ path }) => pathname === path
      || pathname.startsWith(path.endsWith('/') ? path : `${path}/`))
    .sort((a, b) => b.path.length - a.path.length);
  return matching.map(({ name, value }) => `${name}=${value}`).join('; ');
}

async function request(url, init = {}) {
  const headers = new Headers(init.headers);
  const cookies = cookieHeader(url);
  if (cookies) headers.set('cookie', cookies);
  const response = await fetch(url, {
    ...init,
    headers,
    redirect: 'manual',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  storeCookies(response, url);
  return response;
}

// ---- the flow ----------------------------------------------------------------

function base64url(buf) {
  return buf.toString('base64url');
}

function formFields(html) {
  const action = /<form[^>]*\baction="([^"]+)"/i.exec(html)?.[1];
  const fields = {};
  for (const m of html.matchAll(/<input\b[^>]*>/gi)) {
    const tag = m[0];
    const name = /\bname="([^"]*)"/i.exec(tag)?.[1];
    const value = /\bvalue="([^"]*)"/i.exec(tag)?.[1];
    if (name) fields[name] = value ?? '';
  }
  return { action: action?.replace(/&amp;/g, '&'), fields };
}

async function main() {
  const discovery = await (await request(`${issuer}/.well-known/openid-configuration`)).json();
  const { authorization_endpoint: authEndpoint, token_endpoint: tokenEndpoint } = discovery;
  if (!authEndpoint || !tokenEndpoint) fail('discovery has no authorization or token endpoint');

  const verifier = base64url(randomBytes(32));
  const challenge = base64url(createHash('sha256').update(verifier).digest());
  const state = base64url(randomBytes(16));

  const authUrl = new URL(authEndpoint);
  const dpop = dpopKey();
  authUrl.search = new URLSearchParams({
    ...(dpop ? { dpop_jkt: dpop.jkt } : {}),
    client_id: clientId,
    response_type: 'code',
    scope: 'openid offline_access',
    prompt: 'consent',
    redirect_uri: redirectUri,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    state,
  }).toString();

  let next = { url: authUrl.href, init: {} };
  let code;
  for (let step = 0; step < MAX_STEPS && !code; step += 1) {
    const response = await request(next.url, next.init);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      const target = new URL(location, next.url);
      if (target.href.startsWith(redirectUri)) {
        const error = target.searchParams.get('error');
        if (error) fail(`authorization failed: ${error}: ${target.searchParams.get('error_description')}`);
        if (target.searchParams.get('state') !== state) fail('state mismatch');
        code = target.searchParams.get('code');
        if (!code) fail(`no code in ${target.origin}${target.pathname}`);
        break;
      }
      next = { url: target.href, init: {} };
      continue;
    }
    const text = await response.text();
    if (response.status !== 200) fail(`${next.url} answered ${response.status}: ${text.slice(0, 500)}`);
    const { action, fields } = formFields(text);
    if (!action) fail(`no form at ${next.url}: ${text.slice(0, 500)}`);
    if (fields.prompt === 'login') {
      fields.login = login;
      fields.password = 'any password';
    } else if (fields.prompt !== 'consent') {
      fail(`unexpected form (prompt=${fields.prompt}) at ${next.url}`);
    }
    next = {
      url: new URL(action, next.url).href,
      init: {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(fields).toString(),
      },
    };
  }
  if (!code) fail(`no authorization code after ${MAX_STEPS} steps`);

  const body = new URLSearchParams({
    grant_type: 'authorization_code',
    code,
    redirect_uri: redirectUri,
    code_verifier: verifier,
  });
  const headers = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  switch (authMethod) {
    case 'client_secret_basic':
      if (!clientSecret) fail('client_secret_basic needs a secret');
      headers.authorization = `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(clientSecret)}`).toString('base64')}`;
      break;
    case 'client_secret_post':
      if (!clientSecret) fail('client_secret_post needs a secret');
      body.set('client_id', clientId);
      body.set('client_secret', clientSecret);
      break;
    case 'none':
      body.set('client_id', clientId);
      break;
    case 'private_key_jwt':
      body.set('client_id', clientId);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', clientAssertion(tokenEndpoint));
      break;
    default:
      fail(`unsupported auth method ${authMethod}`);
  }
  let response;
  let text;
  let nonce;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    if (dpop) headers.dpop = dpopProof(dpop, 'POST', tokenEndpoint, nonce);
    response = await request(tokenEndpoint, { method: 'POST', headers, body: body.toString() });
    text = await response.text();
    nonce = response.headers.get('dpop-nonce');
    const retry = dpop && attempt === 0 && response.status === 400 && nonce
      && JSON.parse(text).error === 'use_dpop_nonce';
    if (!retry) break;
  }
  if (response.status !== 200) fail(`token endpoint answered ${response.status}: ${text}`);
  const tokens = JSON.parse(text);
  if (dpop) {
    if (tokens.token_type !== 'DPoP') fail(`token_type ${tokens.token_type}, want DPoP`);
    tokens.dpop_private_jwk = dpop.privateJwk;
  }
  if (!tokens.access_token || !tokens.refresh_token) {
    fail(`token response lacks access_token or refresh_token: ${Object.keys(tokens).join(', ')}`);
  }
  process.stdout.write(`${JSON.stringify(tokens)}\n`);
}

/** The DPoP key: DPOP_KEY_JWK, a new ES256 key with --dpop, else none. */
function dpopKey() {
  let privateJwk = JSON.parse(process.env.DPOP_KEY_JWK || 'null');
  if (!privateJwk && !('dpop' in flags)) return undefined;
  if (!privateJwk) {
    // As keys.mjs's newKeyPair: PEM out of the job, a key object of its own
    // for the JWK export (Node 20 can deadlock exporting the job's own key
    // during a garbage collection).
    const { privateKey: pem } = generateKeyPairSync('ec', {
      namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    privateJwk = { ...createPrivateKey(pem).export({ format: 'jwk' }), alg: 'ES256' };
  }
  if (privateJwk.kty !== 'EC' || privateJwk.crv !== 'P-256') fail('DPOP_KEY_JWK must be a P-256 key (ES256)');
  const key = createPrivateKey({ key: privateJwk, format: 'jwk' });
  const { kty, crv, x, y } = createPublicKey(key).export({ format: 'jwk' });
  const publicJwk = { kty, crv, x, y };
  // RFC 7638: the required members, in lexicographic order, no spaces.
  const jkt = base64url(createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest());
  return { key, publicJwk, privateJwk, jkt };
}

/** An RFC 9449 proof for `method` `url` (without its query), ES256. */
function dpopProof({ key, publicJwk }, method, url, nonce) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const htu = new URL(url);
  htu.search = '';
  htu.hash = '';
  const input = `${encode({ typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk })}.${encode({
    jti: base64url(randomBytes(16)), htm: method, htu: htu.href, iat: Math.floor(Date.now() / 1000),
    ...(nonce ? { nonce } : {}),
  })}`;
  return `${input}.${base64url(sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }))}`;
}

/** An RFC 7523 client assertion signed with CLIENT_KEY_JWK. */
function clientAssertion(audience) {
  const jwk = JSON.parse(process.env.CLIENT_KEY_JWK ?? 'null');
  if (!jwk?.alg) fail('private_key_jwt needs CLIENT_KEY_JWK with an alg');
  const key = createPrivateKey({ key: jwk, format: 'jwk' });
  const now = Math.floor(Date.now() / 1000);
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${encode({ alg: jwk.alg, kid: jwk.kid, typ: 'JWT' })}.${encode({
    iss: clientId, sub: clientId, aud: audience, jti: base64url(randomBytes(16)), iat: now, exp: now + 60,
  })}`;
  const signature = sign('sha256', Buffer.from(input), jwk.kty === 'EC' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${base64url(signature)}`;
}

main().then(
  () => process.exit(0),
  (err) => fail(err?.stack ?? String(err)),
);
