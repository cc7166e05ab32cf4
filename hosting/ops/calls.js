// Calling the functions: the Firebase JS SDK 8's httpsCallable, with the signed-in Firebase
// Auth user's ID token, in both places the page runs:
//
// - On Firebase Hosting (its /__/firebase/init.json has no pack391 keys), the SDK posts to
//   <this origin>/<name> (firebase.app().functions(location.origin): SDK 8 keeps only the
//   ORIGIN of a custom domain), and firebase.json's hosting.rewrites send each name the
//   page calls to its function. The ops page is its own Hosting site (target "ops"), so
//   those root paths are its own.
// - On the local stack (init.json has pack391Local and pack391FunctionsBase,
//   "/<project>/<region>"), functions.useEmulator(location.hostname, location.port) makes
//   the SDK post to <this origin>/<project>/<region>/<name>, the local stack's scheme.
//
// Either way every call stays on this page's origin, and nothing is taken from the query
// string.
"use strict";

// An error as httpsCallable reports it (code such as "permission-denied", message,
// details), plus its wire name ("PERMISSION_DENIED"), which the page puts in
// body[data-error].
export class CallError extends Error {
  constructor(code, message, details) {
    super(message);
    this.code = code;
    this.details = details;
    this.status = String(code).toUpperCase().replace(/-/g, "_");
  }
}

// A path on this origin, normalised ("/a/b"), or null: never "//host", "/\\host",
// "https://host" or anything else the URL parser resolves to another origin.
export function sameOriginBase(value) {
  if (typeof value !== "string" || !/^\/(?![/\\])/.test(value)) return null;
  let url;
  try { url = new URL(value, location.origin); } catch { return null; }
  if (url.origin !== location.origin || url.search || url.hash) return null;
  return url.pathname.replace(/\/+$/, "");
}

// "code (message). Details: {...}." as the page shows every refusal: verbatim.
export function describeError(err) {
  const details = err.details === undefined || err.details === null ? "" : ` Details: ${JSON.stringify(err.details)}.`;
  return `(${err.code || "error"}): ${err.message}.${details}`;
}

export function makeCaller(functions) {
  return async function call(name, data) {
    try {
      return (await functions.httpsCallable(name)(data)).data;
    } catch (err) {
      throw new CallError(err.code || "unknown", err.message, err.details);
    }
  };
}
