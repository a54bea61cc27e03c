// A real OpenID authorization server for the OAuth tests: oidc-provider (OpenID-certified), on 127.0.0.1 only.
//
//   node tests/oidc/server.mjs      (after `npm ci` in tests/oidc)
//
// It signs with the keys in the JWK set at $OIDC_JWKS_FILE (the tests make them, so they can also sign tokens
// of their own to be refused), issues JWT access tokens for the resource a client names (RFC 8707), lets
// clients register themselves (RFC 7591), requires PKCE, and signs a user in through its development login
// and consent pages (a registered client may step up to more of the resource's scopes); for resources on "localhost" it issues opaque tokens instead. A confidential client "introspector" (secret $OIDC_INTROSPECTOR_SECRET) may introspect.
// Prints "issuer <url>" once it listens.
import http from "node:http";
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";
import MemoryAdapter from "oidc-provider/lib/adapters/memory_adapter.js";

const jwks = JSON.parse(readFileSync(process.env.OIDC_JWKS_FILE, "utf8"));
const SCOPES = "sessions:read sessions:delete";

// A client registers with the scope it was first challenged for (sessions:read); the scope it registered is
// not kept as a limit, so that it can step up to sessions:delete later, as MCP's authorization expects.
class Adapter extends MemoryAdapter {
  async upsert(id, payload, expiresIn) {
    const { scope, ...rest } = payload;
    return super.upsert(id, this.model === "Client" ? rest : payload, expiresIn);
  }
}

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    jwks,
    adapter: Adapter,
    scopes: ["openid", "offline_access", ...SCOPES.split(" ")],
    clients: [
      {
        client_id: "introspector",
        client_secret: process.env.OIDC_INTROSPECTOR_SECRET,
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    pkce: { required: () => true },
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
    features: {
      devInteractions: { enabled: true },
      registration: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => true,
        // Opaque tokens for resources on "localhost", for the introspection tests; JWTs for any other.
        getResourceServerInfo: (_ctx, resource) => ({
          scope: SCOPES,
          audience: resource,
          accessTokenTTL: 600,
          ...(new URL(resource).hostname === "localhost"
            ? { accessTokenFormat: "opaque" }
            : { accessTokenFormat: "jwt", jwt: { sign: { alg: "RS256" } } }),
        }),
      },
    },
  });
  server.on("request", provider.callback());
  console.log(`issuer ${issuer}`);
});
