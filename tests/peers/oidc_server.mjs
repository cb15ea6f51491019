// The OpenID/OAuth 2 server ferry's OAuth tests run against: oidc-provider
// (a certified implementation), in memory, with one confidential client,
// PKCE required, rotating refresh tokens, short token lifetimes, token
// revocation, and the development login/consent pages a test drives with
// plain HTTP.
//
// A second client, ferry-cc / cc-s3cret, may only use the client
// credentials grant; /token/introspection tells whether a token is live.
//
// Env: PORT, REDIRECT_URI (required); ACCESS_TTL (s, default 60);
//      REFRESH_TTL (s, default 3600); EXTRA_SCOPES (space-separated).
//
// Two test-only routes watch and steer it from outside:
//   GET  /test/counters        {token: {authorization_code, refresh_token}, token_errors, revoked, userinfo}
//   POST /test/revoke-grants   revokes every grant, as a user removing the app would
//   POST /test/token-delay?ms=N  the token endpoint answers N ms late from now on (0: at once)
import Provider from 'oidc-provider';

const { PORT, REDIRECT_URI, ACCESS_TTL = '60', REFRESH_TTL = '3600' } = process.env;
if (!PORT || !REDIRECT_URI) throw new Error('set PORT and REDIRECT_URI');

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [{
    client_id: 'ferry-test',
    client_secret: 's3cret',
    redirect_uris: REDIRECT_URI.split(' '),
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }, {
    // Server to server: the client credentials grant only.
    client_id: 'ferry-cc',
    client_secret: 'cc-s3cret',
    redirect_uris: [],
    grant_types: ['client_credentials'],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // A scope a client asks for is silently dropped unless listed here.
  scopes: ['openid', 'email', 'offline_access', 'calendar.readonly',
           ...(process.env.EXTRA_SCOPES || '').split(' ').filter(Boolean)],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id, email: `${id}@example.test` }) }),
  claims: { openid: ['sub'], email: ['email'] },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: {
    AccessToken: Number(ACCESS_TTL),
    ClientCredentials: Number(ACCESS_TTL),
    // A rotated refresh token keeps what was left of its predecessor's
    // life: a grant ends REFRESH_TTL after sign-in however often it rotates.
    RefreshToken: (ctx) => ctx?.oidc?.entities.RotatedRefreshToken?.remainingTTL ?? Number(REFRESH_TTL),
    Grant: 3600, Session: 3600, Interaction: 600, IdToken: 3600,
  },
  clockTolerance: 0,
  cookies: { keys: ['test-only-cookie-key'] },
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
  },
});

const counters = { token: {}, token_errors: 0, revoked: 0, userinfo: 0 };
let tokenDelayMs = 0;
const grants = new Set();
provider.on('grant.success', (ctx) => {
  const type = ctx.oidc.params.grant_type;
  counters.token[type] = (counters.token[type] || 0) + 1;
});
provider.on('grant.error', (ctx, err) => {
  counters.token_errors += 1;
  console.error(`[idp] ${err.message}: ${err.error_detail ?? err.error_description}`);
});
provider.on('grant.revoked', () => { counters.revoked += 1; });
provider.on('access_token.saved', (t) => grants.add(t.grantId));
provider.on('refresh_token.saved', (t) => grants.add(t.grantId));

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/counters' && ctx.method === 'GET') {
    ctx.body = counters;
    return;
  }
  if (ctx.path === '/test/revoke-grants' && ctx.method === 'POST') {
    for (const id of grants) {
      await provider.AccessToken.revokeByGrantId(id);
      await provider.RefreshToken.revokeByGrantId(id);
      await provider.Grant.adapter.destroy(id);
    }
    ctx.body = { revoked: grants.size };
    grants.clear();
    return;
  }
  if (ctx.path === '/test/token-delay' && ctx.method === 'POST') {
    tokenDelayMs = Math.max(0, Number(ctx.query.ms) || 0);
    ctx.body = { token_delay_ms: tokenDelayMs };
    return;
  }
  if (ctx.path === '/me') counters.userinfo += 1;
  if (ctx.path === '/token' && tokenDelayMs) await new Promise((resolve) => setTimeout(resolve, tokenDelayMs));
  await next();
});

provider.listen(Number(PORT), '127.0.0.1', () => console.error(`[idp] issuer ${provider.issuer} ready`));
