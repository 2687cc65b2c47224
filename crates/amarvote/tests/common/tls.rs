//! A certificate authority of the test's own (the `openssl` crate): a CA certificate and
//! server certificates it signs for given IP addresses, all PEM.

use std::net::IpAddr;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

pub struct Authority {
    cert: X509,
    key: PKey<Private>,
}

/// A server's certificate and key, PEM.
pub struct Identity {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn builder(
    common_name: &str,
    issuer: Option<&X509>,
    key: &PKey<Private>,
    serial: u32,
) -> X509Builder {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .unwrap();
    let name = name.build();
    let mut cert = X509Builder::new().unwrap();
    cert.set_version(2).unwrap();
    let serial = BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap();
    cert.set_serial_number(&serial).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(issuer.map_or(&name, |i| i.subject_name()))
        .unwrap();
    cert.set_pubkey(key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(7).unwrap())
        .unwrap();
    cert
}

impl Authority {
    pub fn new() -> Authority {
        let key = new_key();
        let mut cert = builder("amarvote test CA", None, &key, 1);
        cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        let usage = KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()
            .unwrap();
        cert.append_extension(usage).unwrap();
        cert.sign(&key, MessageDigest::sha256()).unwrap();
        Authority {
            cert: cert.build(),
            key,
        }
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A server certificate for `addresses`, signed by this authority.
    pub fn issue(&self, addresses: &[IpAddr]) -> Identity {
        let key = new_key();
        let mut cert = builder("amarvote test server", Some(&self.cert), &key, 2);
        let mut names = SubjectAlternativeName::new();
        for address in addresses {
            names.ip(&address.to_string());
        }
        let names = names
            .build(&cert.x509v3_context(Some(&self.cert), None))
            .unwrap();
        cert.append_extension(names).unwrap();
        cert.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        cert.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
            .unwrap();
        cert.sign(&self.key, MessageDigest::sha256()).unwrap();
        Identity {
            cert: cert.build().to_pem().unwrap(),
            key: key.private_key_to_pem_pkcs8().unwrap(),
        }
    }
}
