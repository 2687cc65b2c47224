"""The voter's device, played by the reference library (electionguard-python 1.4): encrypts
ballots for an election whose manifest and context it reads from a record directory, with
the library's own `encrypt_ballot`, chaining their tracking codes from one encryption
device as the library does. Used by tests/hostile_election.rs as a client nobody here wrote.

Usage: python encrypt_ballots.py RECORD_DIR REQUEST_JSON
REQUEST_JSON: {"device": {"device_id", "session_id", "launch_code", "location"},
               "ballots": [{"object_id": "...", "choices": {"contest-id": ["selection-id", ...]}}],
               "keep_nonces": false}
Prints {"device_hash": hex, "ballots": [<CiphertextBallot as the library serializes it>]}.
"""
import json
import sys
from datetime import datetime

import dacite
from electionguard import serialize
from electionguard.ballot import PlaintextBallot, PlaintextBallotContest, PlaintextBallotSelection
from electionguard.election import CiphertextElectionContext
from electionguard.encrypt import EncryptionDevice, encrypt_ballot
from electionguard.manifest import InternalManifest, Manifest
from electionguard.serialize import from_file, to_raw

# dacite 1.9 casts datetime after the dateutil hook; the reference's own records need the same workaround.
serialize._config = dacite.Config(
    cast=[t for t in serialize._config.cast if t is not datetime], type_hooks=serialize._config.type_hooks
)

record_dir, request_path = sys.argv[1], sys.argv[2]
manifest = from_file(Manifest, record_dir + "/manifest.json")
context = from_file(CiphertextElectionContext, record_dir + "/context.json")
internal = InternalManifest(manifest)
request = json.load(open(request_path))
d = request["device"]
device = EncryptionDevice(d["device_id"], d["session_id"], d["launch_code"], d["location"])
code_seed = device.get_hash()
style_id = manifest.ballot_styles[0].object_id

out = []
for spec in request["ballots"]:
    contests = []
    for contest in manifest.contests:
        chosen = set(spec["choices"].get(contest.object_id, []))
        contests.append(PlaintextBallotContest(contest.object_id, [
            PlaintextBallotSelection(s.object_id, 1 if s.object_id in chosen else 0)
            for s in contest.ballot_selections]))
    plaintext = PlaintextBallot(spec["object_id"], style_id, contests)
    ballot = encrypt_ballot(plaintext, internal, context, code_seed, should_verify_proofs=True)
    assert ballot is not None, "the reference library refused to encrypt " + spec["object_id"]
    code_seed = ballot.code
    raw = json.loads(to_raw(ballot))
    if not request.get("keep_nonces"):
        raw.pop("nonce", None)
        for c in raw["contests"]:
            c.pop("nonce", None)
            for s in c["ballot_selections"]:
                s.pop("nonce", None)
    out.append(raw)
print(json.dumps({"device_hash": device.get_hash().to_hex(), "ballots": out}))
