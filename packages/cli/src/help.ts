const CREDENTIALS = `Where to earn tokens:
  --issuer URL               authorization server issuer (RFC 8414 discovery)
  --token-endpoint URL       token endpoint, for an AS without metadata

The client and how it authenticates:
  --client-id ID             OAuth client id (required)
  --auth METHOD              basic | post | private_key_jwt | tls | self_signed_tls | none
                             (default: basic with a secret, private_key_jwt with --client-key,
                             tls with --cert, else none)
  --client-secret-env NAME   read the client secret from the environment variable NAME
  --client-secret SECRET     the client secret itself: avoid, argv is visible in ps
  --client-key FILE          private_key_jwt signing key (PEM or private JWK)
  --kid KID                  kid header of the client assertions (default: the JWK's kid)

The binding and TLS:
  --dpop-key FILE            DPoP key (private JWK from bound keygen, or PEM)
  --cert FILE --key FILE     client certificate and key (PEM) for mTLS: tls_client_auth and/or
                             certificate-bound tokens
  --ca FILE                  extra trusted CA (PEM), repeatable; server certificates are always
                             verified

What to ask for:
  --resource URI             resource indicator (RFC 8707)
  --scope SCOPES             space-separated scopes
  --subject-token-file FILE  token exchange (RFC 8693) with the subject token in FILE (read
                             when used, e.g. a Kubernetes projected token)
  --subject-token-env NAME   token exchange with the subject token in the variable NAME
  --subject-token-type TYPE  jwt (default) | id_token | access_token | a token type URN

  --timeout SECONDS          give up after this long (default 30)

A FILE may be - for standard input (one option per command: --cert - --key - is refused).`

/** Help texts, by command. */
export const HELP: Record<string, string> = {
  main: `bound: DPoP- and certificate-bound OAuth from the shell

Usage: bound <command> [options]

Commands:
  keygen       make a DPoP key (private JWK, mode 0600) and print its jkt
  thumbprint   print a certificate's x5t#S256, SPIFFE ID, subject and expiry
  token        earn an access token and print it
  fetch        send one bound request and print the response body
  proof        print one DPoP proof for a request (for curl and other clients)

Options:
  -h, --help     help (also: bound <command> --help)
  -v, --version  the version

Exit codes: 0 ok, 1 runtime error (network, TLS, token endpoint, key, file),
2 usage error, 3 certificate expired or not yet valid (thumbprint), 22 HTTP status >= 400 (fetch).
Errors are printed on stderr as "bound: <CODE>: <message>".
`,
  keygen: `Usage: bound keygen [--alg ALG] [--out FILE] [--force] [--json]

Makes a DPoP key and writes it as a private JWK (with alg and kid = jkt) to FILE with mode 0600,
then prints its RFC 7638 thumbprint (jkt). An existing file is never overwritten without --force.
With --out -, the private JWK itself is printed on stdout instead (and nothing else).

Options:
  --alg ALG       ES256 (default) | ES384 | EdDSA | PS256 | RS256 (RSA: 2048 bits)
  -o, --out FILE  where to write the key (default dpop-key.jwk; - for stdout)
  -f, --force     replace an existing file
  --json          print {"jkt","alg","file"} (not with --out -)

Example:
  bound keygen --out ci-dpop.jwk
`,
  thumbprint: `Usage: bound thumbprint <cert> [--json] [--allow-expired]

Prints the RFC 8705 x5t#S256 of a certificate (PEM or DER; for a PEM chain, the first one), and
its SPIFFE ID (URI SAN spiffe://…), subject and expiry. <cert> may be - for standard input.

Exit code 3 when the certificate is expired or not yet valid (after printing the details, with
ERR_MTLS_CERTIFICATE_EXPIRED on stderr).

Options:
  --json            print {"x5t#S256","spiffeId","subject","issuer","notBefore","notAfter",
                    "expired","notYetValid"}
  --allow-expired   exit 0 for an expired or not yet valid certificate too

Example:
  bound thumbprint /run/svid/cert.pem
`,
  token: `Usage: bound token --issuer URL --client-id ID [options]

Earns an access token (client credentials, or token exchange with --subject-token-*) and prints
it, for a shell step in CI. With --dpop-key it is DPoP-bound to that key; with --cert/--key,
issued over mTLS (certificate-bound when the AS does so).

${CREDENTIALS}

Output:
  --json          print {"access_token","token_type","expires_at","scope","jkt"?,"x5t"?}
                  (expires_at: seconds since the epoch)
  -v, --verbose   describe each HTTP exchange on stderr (never a token, proof or secret)

Example:
  CLIENT_SECRET=… bound token --issuer https://as.example.com --client-id ci \\
    --client-secret-env CLIENT_SECRET --dpop-key dpop-key.jwk --resource https://api.example.com
`,
  proof: `Usage: bound proof <METHOD> <URL> --dpop-key FILE [--token TOKEN | --token-env NAME] [--nonce N]

Prints one DPoP proof (RFC 9449) for METHOD URL, signed with the key in FILE, for a client that
cannot make its own (curl). htu is URL without query or fragment. With an access token, the proof
carries its ath (the token itself is not printed); with --nonce, the server's DPoP-Nonce.

Options:
  --dpop-key FILE     the DPoP key: a private JWK from bound keygen, or PEM (- for stdin)
  --token TOKEN       the access token the proof goes with (- for stdin; argv is visible in ps)
  --token-env NAME    the access token from the environment variable NAME
  --nonce NONCE       the server's DPoP-Nonce (after a use_dpop_nonce challenge)

Example:
  TOKEN=$(bound token --issuer https://as.example.com --client-id ci \\
    --client-secret-env CLIENT_SECRET --dpop-key dpop-key.jwk) && export TOKEN
  curl -H "Authorization: DPoP $TOKEN" \\
    -H "DPoP: $(bound proof GET https://api.example.com/orders --dpop-key dpop-key.jwk --token-env TOKEN)" \\
    https://api.example.com/orders
`,
  fetch: `Usage: bound fetch <url> --client-id ID [options]

Sends one request through Bound's fetch: the URL's origin (and each --origin) receives the token,
a fresh DPoP proof and the client certificate; nonce and invalid_token challenges are answered.
The response body goes to stdout. Exit code 22 when the final status is 400 or more.
Without --dpop-key or --cert, a one-time DPoP key is made for this request. Without --issuer,
the authorization server is learned from the resource's RFC 9728 metadata.

Request:
  -X, --request METHOD   method (default GET, or POST with a body)
  -H, --header 'N: v'    request header, repeatable (not Authorization or DPoP)
  -d, --data DATA        request body (Content-Type defaults to
                         application/x-www-form-urlencoded, as in curl)
  --data-file FILE       request body from FILE (- for stdin)
  --origin ORIGIN        another origin that may receive credentials (redirects), repeatable
  --resource-match M     exact (default) | prefix: the RFC 9728 metadata's resource must be the
                         URL, or (prefix) a path prefix of it on the same origin

Output:
  -i, --include          print the status line and response headers before the body
  --json                 print {"status","url","headers","body"} instead of the body (body:
                         parsed when the response is JSON, else text); not with -i
  -v, --verbose          on stderr, each HTTP exchange (method, URL, credentials by label,
                         status, DPoP-Nonce received), challenges answered, the token acquired;
                         never a token, proof or secret

${CREDENTIALS}

Example:
  bound fetch https://api.example.com/orders --issuer https://as.example.com --client-id ci \\
    --client-secret-env CLIENT_SECRET -X POST -H 'content-type: application/json' -d '{"id":1}'
`,
}
