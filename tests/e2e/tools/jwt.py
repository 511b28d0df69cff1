#!/usr/bin/env python3
"""Keys, a JWKS and JWTs for the OIDC tests, made with the openssl command
(keys and signatures); this only encodes.

  jwt.py keys DIR
      makes DIR/rsa-1.pem, DIR/rsa-2.pem (RSA 2048) and DIR/ec-1.pem
      (P-256), and DIR/jwks.json (rsa-1, ec-1) and DIR/jwks-rotated.json
      (the same and rsa-2)
  jwt.py token DIR KEY ALG KID CLAIMS
      prints a compact JWS of CLAIMS (JSON; "exp" and "nbf" given as
      offsets such as "+300" or "-120" become times from now), signed by
      DIR/KEY.pem with ALG (RS256, ES256; HS256 takes DIR/KEY.pem's public
      key in PEM as its secret; none signs nothing), KID in the header
      ("-": none)
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True,
                          check=True).stdout


def public_der(pem):
    return openssl("pkey", "-in", pem, "-pubout", "-outform", "DER")


def jwk(d, name):
    pem = os.path.join(d, name + ".pem")
    if name.startswith("rsa"):
        text = openssl("rsa", "-in", pem, "-noout", "-modulus").decode()
        n = bytes.fromhex(text.strip().split("=", 1)[1])
        return {"kty": "RSA", "kid": name, "use": "sig", "alg": "RS256",
                "n": b64(n), "e": "AQAB"}
    point = public_der(pem)[-65:]  # 0x04 || X || Y ends a P-256 key's SPKI
    return {"kty": "EC", "kid": name, "crv": "P-256", "use": "sig",
            "x": b64(point[1:33]), "y": b64(point[33:])}


def keys(d):
    os.makedirs(d, exist_ok=True)
    for name in ("rsa-1", "rsa-2"):
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", os.path.join(d, name + ".pem"))
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", os.path.join(d, "ec-1.pem"))
    for out, names in (("jwks.json", ("rsa-1", "ec-1")),
                       ("jwks-rotated.json", ("rsa-1", "ec-1", "rsa-2"))):
        with open(os.path.join(d, out), "w") as f:
            json.dump({"keys": [jwk(d, n) for n in names]}, f)


def der_to_raw(sig):
    """An ECDSA signature as DER (SEQUENCE of two INTEGERs) to r || s."""
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out += sig[i + 2:i + 2 + n].lstrip(b"\0").rjust(32, b"\0")
        i += 2 + n
    return out


def token(d, key, alg, kid, claims):
    pem = os.path.join(d, key + ".pem")
    body = json.loads(claims)
    for k in ("exp", "nbf", "iat"):
        if isinstance(body.get(k), str):
            body[k] = int(time.time()) + int(body[k])
    header = {"alg": alg, "typ": "JWT"}
    if kid != "-":
        header["kid"] = kid
    signing = (b64(json.dumps(header).encode()) + "." +
               b64(json.dumps(body).encode())).encode()
    if alg == "RS256":
        sig = openssl("dgst", "-sha256", "-sign", pem, data=signing)
    elif alg == "ES256":
        sig = der_to_raw(openssl("dgst", "-sha256", "-sign", pem, data=signing))
    elif alg == "HS256":
        secret = openssl("pkey", "-in", pem, "-pubout")
        sig = hmac.new(secret, signing, hashlib.sha256).digest()
    else:
        sig = b""
    return signing.decode() + "." + b64(sig)


if __name__ == "__main__":
    if sys.argv[1:2] == ["keys"] and len(sys.argv) == 3:
        keys(sys.argv[2])
    elif sys.argv[1:2] == ["token"] and len(sys.argv) == 7:
        print(token(*sys.argv[2:]))
    else:
        sys.exit(__doc__)
