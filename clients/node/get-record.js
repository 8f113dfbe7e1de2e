// GetRecord from Node.js with @grpc/grpc-js and the protos: DWP, at Whitehall, asks for a
// Scottish birth registration. With `make up` running, from the checkout:
//   npm ci --prefix clients/node && node clients/node/get-record.js
// CONCORDAT_TARGET, CONCORDAT_CA_CERT and CONCORDAT_TOKEN_COMMAND name another node, its CA
// and the command that prints a fresh token.
const { execSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const definition = protoLoader.loadSync("concordat/exchange/v1/exchange.proto", {
  includeDirs: [path.join(__dirname, "..", "..", "proto")],
  keepCase: true, // field names as in the .proto files
  enums: String,
  longs: String,
  oneofs: true,
});
const { ExchangeService } = grpc.loadPackageDefinition(definition).concordat.exchange.v1;

const target = process.env.CONCORDAT_TARGET ?? "127.0.0.1:7401";
const ca = fs.readFileSync(process.env.CONCORDAT_CA_CERT ?? ".state/whitehall/ca.pem");
const tokenCommand =
  process.env.CONCORDAT_TOKEN_COMMAND ??
  ".venv/bin/concordat token --node whitehall --organisation dwp --system my-system";

const client = new ExchangeService(target, grpc.credentials.createSsl(ca));
// Tokens are single use: a fresh one for every call.
const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${execSync(tokenCommand).toString().trim()}`);
const request = {
  record_type: "RECORD_TYPE_BIRTH_REGISTRATION",
  subject: { registration_id: "SC-B-1931-000037" },
  purpose: "PURPOSE_CIVIL_REGISTRATION",
  agreement_id: "cr-dwp-nrs-births-2026",
  field_mask: { paths: ["registration_id", "given_name", "date_of_birth"] },
};

client.GetRecord(request, metadata, { deadline: Date.now() + 10_000 }, (error, response) => {
  client.close();
  if (error) {
    // The reason, rule and node are in a google.rpc.ErrorInfo in the trailers'
    // grpc-status-details-bin (a google.rpc.Status); the message names the rule too.
    console.error(`${grpc.status[error.code]}: ${error.details}`);
    process.exitCode = 1;
    return;
  }
  const birth = response.records[0].birth_registration;
  console.log(`${birth.registration_id}: ${birth.given_name}, born ${birth.date_of_birth}`);
  console.log(`from ${response.provider_node}, exchange ${response.exchange_id}`);
  console.log(`released: ${response.released_fields.join(", ")}`);
});
