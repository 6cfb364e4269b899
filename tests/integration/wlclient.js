'use strict';
// A second, independent Workload API client: @grpc/grpc-js with @grpc/proto-loader reading
// proto/workload.proto at run time, checking what the agent serves with Node's own crypto (OpenSSL
// underneath, no code shared with Lanyard or with the Python client). Used by test_workload_node.sh.
//
//   node wlclient.js --modules DIR --proto-dir DIR --socket PATH [--timeout S] COMMAND [ARGS]
//     x509 --expect-id ID      first FetchX509SVID message: one SVID with ID, cert, key, bundle
//     jwt --expect-id ID --audience AUD
//                              FetchJWTSVID; header and claims, signature against FetchJWTBundles
//     no-header --method M     M without the security header must fail with INVALID_ARGUMENT
//
// Prints one JSON line describing what it checked and exits 0, or prints "error: ..." and exits 1.
// Every call carries a deadline and a watchdog ends the process, so it always stops by itself.

const crypto = require('node:crypto');
const path = require('node:path');
const { createRequire } = require('node:module');

class CheckError extends Error {}

function check(cond, msg) {
	if (!cond)
		throw new CheckError(msg);
}

function parseArgs(argv) {
	const o = { timeout: 10, expectId: null, audience: null, method: null };
	const rest = [];
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const val = () => {
			if (i + 1 >= argv.length)
				throw new CheckError(`${a} needs a value`);
			return argv[++i];
		};
		switch (a) {
		case '--modules': o.modules = val(); break;
		case '--proto-dir': o.protoDir = val(); break;
		case '--socket': o.socket = val(); break;
		case '--timeout': o.timeout = Number(val()); break;
		case '--expect-id': o.expectId = val(); break;
		case '--audience': o.audience = val(); break;
		case '--method': o.method = val(); break;
		default:
			if (a.startsWith('--'))
				throw new CheckError(`unknown option ${a}`);
			rest.push(a);
		}
	}
	check(o.modules && o.protoDir && o.socket, '--modules, --proto-dir and --socket are required');
	check(Number.isFinite(o.timeout) && o.timeout > 0, '--timeout must be a positive number');
	check(rest.length === 1, 'exactly one command expected');
	o.command = rest[0];
	return o;
}

// Splits concatenated DER certificates by reading each outer SEQUENCE's length, so a chain or a
// bundle becomes a list of certificates whatever X509Certificate does with trailing bytes.
function splitDer(buf, what) {
	const out = [];
	let off = 0;
	while (off < buf.length) {
		check(buf.length - off >= 2 && buf[off] === 0x30, `${what}: not a DER SEQUENCE at ${off}`);
		let len = buf[off + 1], hdr = 2;
		if (len & 0x80) {
			const n = len & 0x7f;
			check(n >= 1 && n <= 4 && buf.length - off >= 2 + n, `${what}: bad DER length at ${off}`);
			len = 0;
			for (let k = 0; k < n; k++)
				len = len * 256 + buf[off + 2 + k];
			hdr = 2 + n;
		}
		check(off + hdr + len <= buf.length, `${what}: truncated DER at ${off}`);
		out.push(buf.subarray(off, off + hdr + len));
		off += hdr + len;
	}
	return out;
}

function uriSans(cert) {
	// subjectAltName is "URI:spiffe://..., DNS:..."; Node quotes values holding a comma.
	return (cert.subjectAltName || '').split(', ').filter((s) => s.startsWith('URI:'))
		.map((s) => s.slice(4));
}

function b64urlJson(part, what) {
	try {
		return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
	} catch (e) {
		throw new CheckError(`${what} is not base64url JSON: ${e.message}`);
	}
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	// A watchdog on top of the per-call deadlines: nothing here may outlive --timeout by much.
	setTimeout(() => {
		console.error(`error: watchdog: still running after ${o.timeout + 5} s`);
		process.exit(1);
	}, (o.timeout + 5) * 1000).unref();

	const req = createRequire(path.join(path.resolve(o.modules), 'package.json'));
	const grpc = req('@grpc/grpc-js');
	const protoLoader = req('@grpc/proto-loader');

	const def = protoLoader.loadSync('workload.proto', {
		keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
		includeDirs: [o.protoDir],
	});
	const Api = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
	check(Api, 'workload.proto defines no SpiffeWorkloadAPI service');
	const client = new Api(`unix://${o.socket}`, grpc.credentials.createInsecure());
	const deadline = () => new Date(Date.now() + o.timeout * 1000);
	const header = () => {
		const md = new grpc.Metadata();
		md.set('workload.spiffe.io', 'true');
		return md;
	};

	// The first message of a server stream, then the stream is cancelled.
	const firstMessage = (method, request, md) => new Promise((resolve, reject) => {
		const call = client[method](request, md, { deadline: deadline() });
		let done = false;
		call.on('data', (msg) => {
			if (done)
				return;
			done = true;
			call.cancel();
			resolve(msg);
		});
		call.on('error', (e) => {
			if (!done) {
				done = true;
				reject(e);
			}
		});
		call.on('end', () => {
			if (!done) {
				done = true;
				reject(new CheckError(`${method}: stream ended without a message`));
			}
		});
	});
	const unary = (method, request, md) => new Promise((resolve, reject) => {
		client[method](request, md, { deadline: deadline() }, (e, msg) => (e ? reject(e) : resolve(msg)));
	});

	let result;
	try {
		switch (o.command) {
		case 'x509': result = await checkX509(o, await firstMessage('FetchX509SVID', {}, header())); break;
		case 'jwt': result = await checkJwt(o, unary, firstMessage, header); break;
		case 'no-header': result = await checkNoHeader(o, grpc, unary, firstMessage); break;
		default: throw new CheckError(`unknown command ${o.command}`);
		}
	} finally {
		client.close();
	}
	console.log(JSON.stringify(result));
}

function checkX509(o, msg) {
	check(o.expectId, 'x509 needs --expect-id');
	check(Array.isArray(msg.svids), 'response has no svids field');
	check(msg.svids.length === 1,
		`expected exactly one SVID, got ${msg.svids.length}: ${msg.svids.map((s) => s.spiffe_id)}`);
	const s = msg.svids[0];
	check(s.spiffe_id === o.expectId, `spiffe_id is ${s.spiffe_id}, expected ${o.expectId}`);

	const chain = splitDer(s.x509_svid, 'x509_svid').map((d) => new crypto.X509Certificate(d));
	check(chain.length >= 1, 'x509_svid holds no certificate');
	const leaf = chain[0];
	const uris = uriSans(leaf);
	check(uris.length === 1 && uris[0] === o.expectId,
		`leaf URI SANs are ${JSON.stringify(uris)}, expected exactly [${o.expectId}] ` +
		`(subjectAltName: ${leaf.subjectAltName})`);
	check(!leaf.ca, 'the leaf is a CA certificate');
	const now = Date.now();
	check(new Date(leaf.validFrom).getTime() <= now + 1000, `leaf not yet valid: ${leaf.validFrom}`);
	check(new Date(leaf.validTo).getTime() > now, `leaf expired: ${leaf.validTo}`);

	const key = crypto.createPrivateKey({ key: s.x509_svid_key, format: 'der', type: 'pkcs8' });
	check(leaf.checkPrivateKey(key), 'x509_svid_key does not match the leaf public key');
	// The key must really sign for the leaf's public key, not only compare equal.
	const sig = crypto.sign(null, Buffer.from('lanyard-node-interop'), key);
	check(crypto.verify(null, Buffer.from('lanyard-node-interop'), leaf.publicKey, sig),
		'a signature by x509_svid_key does not verify with the leaf public key');

	const bundle = splitDer(s.bundle, 'bundle').map((d) => new crypto.X509Certificate(d));
	check(bundle.length >= 1, 'the bundle holds no certificate');
	for (const ca of bundle) {
		check(ca.ca, `bundle certificate ${ca.subject} is not a CA`);
		check(JSON.stringify(uriSans(ca)) === JSON.stringify([trustDomainOf(o.expectId)]),
			`bundle certificate URI SANs ${JSON.stringify(uriSans(ca))}`);
	}
	// Walk the chain up to an authority of the bundle: each certificate signed by the next one,
	// the last one by a bundle CA.
	for (let i = 0; i + 1 < chain.length; i++)
		check(chain[i].verify(chain[i + 1].publicKey) && chain[i].checkIssued(chain[i + 1]),
			`chain certificate ${i} is not signed by certificate ${i + 1}`);
	const top = chain[chain.length - 1];
	const anchor = bundle.find((ca) => top.checkIssued(ca) && top.verify(ca.publicKey));
	check(anchor, 'no CA of the bundle verifies the chain');
	// The same test must be able to fail: a key that is not the CA's must not verify the leaf.
	const { publicKey: other } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
	check(!top.verify(other), 'the leaf verifies with an unrelated key');

	return {
		spiffe_id: s.spiffe_id, chain: chain.length, bundle: bundle.length,
		key_type: key.asymmetricKeyType, serial: leaf.serialNumber,
		not_before: leaf.validFrom, not_after: leaf.validTo, anchor: anchor.fingerprint256,
	};
}

function trustDomainOf(id) {
	const m = /^spiffe:\/\/([^/]+)\//.exec(id);
	check(m, `${id} is not a leaf SPIFFE ID`);
	return `spiffe://${m[1]}`;
}

const JWS_ALGS = {
	RS256: ['sha256', {}], RS384: ['sha384', {}], RS512: ['sha512', {}],
	ES256: ['sha256', { dsaEncoding: 'ieee-p1363' }], ES384: ['sha384', { dsaEncoding: 'ieee-p1363' }],
	ES512: ['sha512', { dsaEncoding: 'ieee-p1363' }],
	PS256: ['sha256', { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }],
	PS384: ['sha384', { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }],
	PS512: ['sha512', { padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 64 }],
};

async function checkJwt(o, unary, firstMessage, header) {
	check(o.expectId && o.audience, 'jwt needs --expect-id and --audience');
	const resp = await unary('FetchJWTSVID', { audience: [o.audience], spiffe_id: o.expectId }, header());
	check(Array.isArray(resp.svids) && resp.svids.length === 1,
		`expected one JWT-SVID, got ${resp.svids ? resp.svids.length : 'none'}`);
	const s = resp.svids[0];
	check(s.spiffe_id === o.expectId, `JWT-SVID spiffe_id is ${s.spiffe_id}`);
	const parts = s.svid.split('.');
	check(parts.length === 3, `the token has ${parts.length} parts, not 3`);
	const hdr = b64urlJson(parts[0], 'the JWS header');
	const claims = b64urlJson(parts[1], 'the JWS payload');

	check(Object.hasOwn(JWS_ALGS, hdr.alg), `alg ${hdr.alg} is not a JWT-SVID algorithm`);
	check(typeof hdr.kid === 'string' && hdr.kid.length > 0, 'header has no kid');
	check(hdr.typ === 'JWT' || hdr.typ === 'JOSE', `typ is ${hdr.typ}, expected JWT or JOSE`);
	const extra = Object.keys(hdr).filter((k) => !['alg', 'kid', 'typ'].includes(k));
	check(extra.length === 0, `unexpected header parameters ${extra}`);
	check(claims.sub === o.expectId, `sub is ${claims.sub}`);
	const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
	check(aud.includes(o.audience), `aud ${JSON.stringify(claims.aud)} lacks ${o.audience}`);
	const now = Math.floor(Date.now() / 1000);
	check(Number.isInteger(claims.exp) && claims.exp > now, `exp ${claims.exp} is not in the future`);

	// The signature, with the key the JWT bundle publishes under kid.
	const bundles = (await firstMessage('FetchJWTBundles', {}, header())).bundles;
	const td = trustDomainOf(o.expectId);
	check(bundles && bundles[td], `FetchJWTBundles has no bundle for ${td}`);
	const set = JSON.parse(Buffer.from(bundles[td]).toString('utf8'));
	const jwk = (set.keys || []).find((k) => k.kid === hdr.kid);
	check(jwk, `the JWT bundle has no key ${hdr.kid}`);
	const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' });
	const [digest, opts] = JWS_ALGS[hdr.alg];
	const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
	const sig = Buffer.from(parts[2], 'base64url');
	check(crypto.verify(digest, signed, { key: pub, ...opts }, sig),
		'the token signature does not verify with the bundle key');
	const forged = Buffer.from(`${parts[0]}.${Buffer.from(JSON.stringify({ ...claims, sub: `${td}/forged` })).toString('base64url')}`);
	check(!crypto.verify(digest, forged, { key: pub, ...opts }, sig), 'a forged payload verifies');

	return { alg: hdr.alg, kid: hdr.kid, typ: hdr.typ, sub: claims.sub, aud: claims.aud, exp: claims.exp };
}

async function checkNoHeader(o, grpc, unary, firstMessage) {
	const calls = {
		FetchX509SVID: () => firstMessage('FetchX509SVID', {}, new grpc.Metadata()),
		FetchX509Bundles: () => firstMessage('FetchX509Bundles', {}, new grpc.Metadata()),
		FetchJWTBundles: () => firstMessage('FetchJWTBundles', {}, new grpc.Metadata()),
		FetchJWTSVID: () => unary('FetchJWTSVID', { audience: ['x'] }, new grpc.Metadata()),
		ValidateJWTSVID: () => unary('ValidateJWTSVID', { audience: 'x', svid: 'a.b.c' }, new grpc.Metadata()),
	};
	check(calls[o.method], `no-header: unknown --method ${o.method}`);
	try {
		await calls[o.method]();
	} catch (e) {
		if (e instanceof CheckError)
			throw e;
		check(e.code === grpc.status.INVALID_ARGUMENT,
			`${o.method} without header: status ${e.code} (${e.details}), expected 3 INVALID_ARGUMENT`);
		return { method: o.method, code: e.code, details: e.details };
	}
	throw new CheckError(`${o.method} without the security header succeeded`);
}

main().catch((e) => {
	const what = e instanceof CheckError ? e.message
		: e && typeof e.code === 'number' ? `gRPC status ${e.code}: ${e.details}` : (e && e.stack) || String(e);
	console.error(`error: ${what}`);
	process.exit(1);
});
