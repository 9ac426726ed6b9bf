// A real OpenID provider for the sign-in tests: the npm package oidc-provider (a certified
// OpenID Connect implementation) with its development interactions (a login form that takes any
// account id, then a consent form), on 127.0.0.1.
//
// Usage: node oidc_provider.js CONFIG_JSON
//   {"port": 0, "clients": [{client_id, client_secret, redirect_uris}],
//    "accounts": {"<sub>": {preferred_username, email, email_verified, given_name, ...}}}
// Prints "listening <issuer>" on stdout once it serves; stops on SIGTERM or when stdin closes.

import http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2]);

const server = http.createServer();
await new Promise((resolve) => server.listen(config.port || 0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...client,
  })),
  // Every claim in the ID token too (not only from userinfo), as many providers do.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username', 'groups'],
  },
  async findAccount(ctx, sub) {
    const account = config.accounts[sub];
    if (!account) return undefined;
    return { accountId: sub, async claims() { return { sub, ...account }; } };
  },
  // PKCE is required of every client (the default asks it only of public ones).
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['simplechat-test-peer-cookie-key'] },
  ttl: { AuthorizationCode: 60, IdToken: 3600, AccessToken: 3600, Session: 3600,
         Interaction: 3600, Grant: 3600 },
});
// The development interactions warn on stderr at start; tests read stdout only.
provider.on('server_error', (ctx, error) => console.error('server_error', error));

server.on('request', provider.callback());
console.log(`listening ${issuer}`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
