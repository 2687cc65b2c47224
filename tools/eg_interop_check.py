"""Loads a record written by `amarvote demo --record DIR` with electionguard-python 1.4 and
checks it with the reference's own functions. Usage: python eg_interop_check.py DIR

Set-up: see ../shared/tools/README.md (a venv with electionguard==1.4.0 and its one patch).
"""
import glob
import sys

import dacite
from datetime import datetime
from electionguard import serialize
from electionguard.serialize import from_file
from electionguard.manifest import Manifest
from electionguard.election import CiphertextElectionContext
from electionguard.ballot import SubmittedBallot
from electionguard.tally import PlaintextTally, PublishedCiphertextTally
from electionguard.guardian import GuardianRecord

d = sys.argv[1]
# dacite 1.9 casts datetime after the dateutil hook; the reference's own records need the same workaround.
serialize._config = dacite.Config(cast=[t for t in serialize._config.cast if t is not datetime], type_hooks=serialize._config.type_hooks)
m = from_file(Manifest, d + "/manifest.json")
c = from_file(CiphertextElectionContext, d + "/context.json")
results = {"manifest hash": m.crypto_hash() == c.manifest_hash}
files = sorted(glob.glob(d + "/submitted_ballots/*"))
results["ballots valid"] = all(
    from_file(SubmittedBallot, f).is_valid_encryption(c.manifest_hash, c.elgamal_public_key, c.crypto_extended_base_hash) for f in files
)
guardians = [from_file(GuardianRecord, f) for f in glob.glob(d + "/guardians/*")]
results["schnorr proofs"] = all(p.is_valid() for g in guardians for p in g.election_proofs)
keys = {g.guardian_id: g.election_public_key for g in guardians}
from_file(PublishedCiphertextTally, d + "/encrypted_tally.json")
tallies = [from_file(PlaintextTally, d + "/tally.json")] + [from_file(PlaintextTally, f) for f in glob.glob(d + "/spoiled_ballots/*")]
results["decryption shares"] = all(
    share.is_valid(sel.message, keys[share.guardian_id], c.crypto_extended_base_hash)
    for t in tallies for con in t.contests.values() for sel in con.selections.values() for share in sel.shares
)
print(results, f"({len(files)} ballots)")
sys.exit(0 if all(results.values()) else 1)
