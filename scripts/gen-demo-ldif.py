#!/usr/bin/env python3
"""Generate the demo data LDIF for the stoney cloud customer directory.

Produces (on stdout) deterministic demo entries below dc=stoney-cloud,dc=org:

  * 3 resellers (uid=4000001..4000003) under ou=reseller, each with an
    ou=address and an ou=customers child,
  * 60 customers (uid=5000001..5000060, 20 per reseller) under
    ou=customers,uid=<reseller>,ou=reseller, each with an ou=address
    (billing) child and, for some of them, an ou=shipping child,
  * 6 login users (uid=5000901..5000906) under ou=people.

The base entries (dc=stoney-cloud,dc=org, ou=administration,
cn=nextfreeuid,ou=administration, ou=people, ou=reseller) are NOT emitted;
they come from the base LDIF that is loaded first with slapadd.

Output is fully deterministic (fixed random seed, fixed password salts), so
rerunning the script yields a byte-identical file.  Regenerate with:

    python3 scripts/gen-demo-ldif.py > ldif/demo.ldif

Python 3 standard library only.
"""

import base64
import hashlib
import random
import sys
import unicodedata

BASE = "dc=stoney-cloud,dc=org"
RESELLER_OU = "ou=reseller," + BASE
PEOPLE_OU = "ou=people," + BASE

SEED = 20240601
NUM_CUSTOMERS = 60
CUSTOMERS_PER_RESELLER = 20
FIRST_CUSTOMER_UID = 5000001
RESELLER_UIDS = ["4000001", "4000002", "4000003"]

# ---------------------------------------------------------------------------
# LDIF output helpers (RFC 2849)
# ---------------------------------------------------------------------------


def needs_base64(value):
    """True if value is not a SAFE-STRING per RFC 2849 (or has a trailing
    space, which is legal but easily lost)."""
    if value == "":
        return False
    if value[0] in (" ", ":", "<"):
        return True
    if value[-1] == " ":
        return True
    return any(not (0x20 <= ord(ch) <= 0x7E) for ch in value)


def ldif_line(attr, value):
    value = str(value)
    if needs_base64(value):
        return "%s:: %s" % (attr, base64.b64encode(value.encode("utf-8")).decode("ascii"))
    return "%s: %s" % (attr, value)


def write_entry(out, dn, attrs):
    """attrs: list of (attribute, value) pairs; values of None are skipped."""
    out.append(ldif_line("dn", dn))
    for attr, value in attrs:
        if value is None:
            continue
        out.append(ldif_line(attr, value))
    out.append("")


def ssha(password, salt):
    digest = hashlib.sha1(password.encode("utf-8") + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode("ascii")


def bool_str(flag):
    return "TRUE" if flag else "FALSE"


def escape_postal_line(line):
    """Escape one line of a postalAddress value (RFC 4517 section 3.3.28)."""
    return line.replace("\\", "\\5C").replace("$", "\\24")


def postal_address(lines):
    return "$".join(escape_postal_line(line) for line in lines)


_TRANSLIT = {
    "ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue",
    "ß": "ss", "Ł": "L", "ł": "l", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae",
    "å": "a", "Å": "A",
}


def ascii_slug(text, sep="."):
    """Transliterate text to a lower-case ASCII token usable in mail/URLs."""
    text = "".join(_TRANSLIT.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    out = []
    for ch in text.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch in " -/&":
            if out and out[-1] != sep:
                out.append(sep)
        # everything else (apostrophes, dots, ...) is dropped
    return "".join(out).strip(sep)


# ---------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------

# city -> (country, [postal codes], st, phone area code, preferredLanguage,
#          street style)
CITIES = {
    # Switzerland
    "Bern": ("CH", ["3011", "3012", "3013", "3007", "3008"], None, "31", "de-CH", "ch_de"),
    "Zürich": ("CH", ["8001", "8002", "8004", "8005", "8050"], None, "44", "de-CH", "ch_de"),
    "Genève": ("CH", ["1201", "1204", "1205"], None, "22", "fr-CH", "ch_fr"),
    "Basel": ("CH", ["4051", "4052", "4056"], None, "61", "de-CH", "ch_de"),
    "Lausanne": ("CH", ["1003", "1004"], None, "21", "fr-CH", "ch_fr"),
    "Luzern": ("CH", ["6003", "6004"], None, "41", "de-CH", "ch_de"),
    "St. Gallen": ("CH", ["9000", "9008"], None, "71", "de-CH", "ch_de"),
    "Lugano": ("CH", ["6900"], None, "91", "it-CH", "it"),
    "Biel/Bienne": ("CH", ["2502", "2503"], None, "32", "de-CH", "ch_de"),
    "Thun": ("CH", ["3600"], None, "33", "de-CH", "ch_de"),
    # Germany
    "München": ("DE", ["80331", "80333", "80469"], None, "89", "de-DE", "de"),
    "Berlin": ("DE", ["10115", "10117", "10178"], None, "30", "de-DE", "de"),
    "Hamburg": ("DE", ["20095", "20099"], None, "40", "de-DE", "de"),
    "Köln": ("DE", ["50667", "50672"], None, "221", "de-DE", "de"),
    "Frankfurt am Main": ("DE", ["60311", "60313"], None, "69", "de-DE", "de"),
    # Austria
    "Wien": ("AT", ["1010", "1060", "1070"], None, "1", "de-AT", "at"),
    "Graz": ("AT", ["8010"], None, "316", "de-AT", "at"),
    "Salzburg": ("AT", ["5020"], None, "662", "de-AT", "at"),
    "Innsbruck": ("AT", ["6020"], None, "512", "de-AT", "at"),
    # France
    "Lyon": ("FR", ["69001", "69002"], None, "4", "fr-FR", "fr"),
    "Paris": ("FR", ["75008", "75011"], None, "1", "fr-FR", "fr"),
    "Marseille": ("FR", ["13001"], None, "4", "fr-FR", "fr"),
    "Strasbourg": ("FR", ["67000"], None, "3", "fr-FR", "fr"),
    # Italy
    "Milano": ("IT", ["20121", "20122"], None, "02", "it-IT", "it"),
    "Roma": ("IT", ["00184", "00186"], None, "06", "it-IT", "it"),
    "Torino": ("IT", ["10121"], None, "011", "it-IT", "it"),
    "Bolzano": ("IT", ["39100"], None, "0471", "it-IT", "it"),
    # United States
    "New York": ("US", ["10001", "10118"], "NY", "212", "en-US", "us_en"),
    "San Francisco": ("US", ["94103", "94105"], "CA", "415", "en-US", "us_en"),
    "Seattle": ("US", ["98101"], "WA", "206", "en-US", "us_en"),
    "Austin": ("US", ["78701"], "TX", "512", "en-US", "us_en"),
    "Boston": ("US", ["02108"], "MA", "617", "en-US", "us_en"),
    # Canada
    "Toronto": ("CA", ["M5V 2T6", "M5H 2N2"], "ON", "416", "en-CA", "ca_en"),
    "Montréal": ("CA", ["H2X 1Y4", "H3B 4W8"], "QC", "514", "fr-CA", "ca_fr"),
    "Vancouver": ("CA", ["V6B 1A1"], "BC", "604", "en-CA", "ca_en"),
    "Québec": ("CA", ["G1R 4P5"], "QC", "418", "fr-CA", "ca_fr"),
    "Ottawa": ("CA", ["K1P 5J9"], "ON", "613", "en-CA", "ca_en"),
}

# Weighted city pools per country (Bern and Zürich deliberately dominate).
CITY_POOL = {
    "CH": ["Bern"] * 6 + ["Zürich"] * 6 + ["Genève"] * 2 + ["Basel"] * 2
          + ["Lausanne", "Luzern", "St. Gallen", "Lugano", "Biel/Bienne", "Thun"],
    "DE": ["München", "München", "Berlin", "Berlin", "Hamburg", "Köln", "Frankfurt am Main"],
    "AT": ["Wien", "Wien", "Graz", "Salzburg", "Innsbruck"],
    "FR": ["Lyon", "Lyon", "Paris", "Marseille", "Strasbourg"],
    "IT": ["Milano", "Milano", "Roma", "Torino", "Bolzano"],
    "US": ["New York", "New York", "San Francisco", "Seattle", "Austin", "Boston"],
    "CA": ["Toronto", "Toronto", "Montréal", "Vancouver", "Québec", "Ottawa"],
}

STREETS = {
    "ch_de": ["Bahnhofstrasse", "Marktgasse", "Kramgasse", "Spitalgasse", "Seestrasse",
              "Hauptstrasse", "Gerechtigkeitsgasse", "Länggassstrasse", "Löwenstrasse",
              "Limmatquai", "Bundesgasse", "Seefeldstrasse"],
    "ch_fr": ["Rue du Rhône", "Rue de Lausanne", "Avenue de la Gare", "Rue du Marché",
              "Chemin des Crêts", "Boulevard Carl-Vogt"],
    "de": ["Leopoldstraße", "Hauptstraße", "Schillerstraße", "Goethestraße",
           "Friedrichstraße", "Mönckebergstraße", "Schildergasse"],
    "at": ["Mariahilfer Straße", "Kärntner Straße", "Getreidegasse", "Herrengasse",
           "Maria-Theresien-Straße"],
    "fr": ["Rue de la République", "Rue Victor Hugo", "Boulevard Haussmann",
           "Rue Mercière", "Quai Saint-Antoine"],
    "it": ["Via Dante", "Corso Vittorio Emanuele II", "Via Roma", "Via del Corso",
           "Piazza Walther", "Via Nassa"],
    "us_en": ["Fifth Avenue", "Market Street", "Pine Street", "Congress Avenue",
              "Broadway", "Main Street", "Madison Avenue"],
    "ca_en": ["King Street West", "Queen Street East", "Granville Street", "Yonge Street",
              "Bank Street", "Bay Street"],
    "ca_fr": ["Rue Sainte-Catherine Ouest", "Boulevard Saint-Laurent", "Rue Saint-Jean",
              "Grande Allée Est"],
}

# Street styles where the house number comes first.
NUMBER_FIRST = {"fr", "us_en", "ca_en", "ca_fr"}

# Name pools per language region: (given names with gender, surnames).
GIVEN = {
    "de": [("Jürg", "m"), ("Hans", "m"), ("Anna", "f"), ("Ursula", "f"), ("Lukas", "m"),
           ("Lena", "f"), ("Björn", "m"), ("Käthi", "f"), ("Matthias", "m"),
           ("Zoë", "f"), ("Łukasz", "m"), ("Kim", "n"), ("Sophie", "f")],
    "fr": [("Françoise", "f"), ("René", "m"), ("Hélène", "f"), ("Émile", "m"),
           ("Chloé", "f"), ("Anaïs", "f"), ("Noé", "m"), ("Loïc", "m"), ("Camille", "n")],
    "it": [("Giulia", "f"), ("Marco", "m"), ("Niccolò", "m"), ("Francesca", "f"),
           ("Andrea", "m"), ("Chiara", "f")],
    "en": [("John", "m"), ("Emily", "f"), ("Michael", "m"), ("Sarah", "f"),
           ("Zoë", "f"), ("Alex", "n"), ("Geneviève", "f"), ("Mathieu", "m")],
}

SURNAMES = {
    "de": ["Müller", "Müller", "Meier", "Schmid", "Keller", "Weber", "Huber", "Gödel",
           "Ståhl", "Brunner", "Zürcher", "Schäfer"],
    "fr": ["Bégué", "Dubois", "Lefèvre", "Rochat", "Mercier", "Müller", "Favre"],
    "it": ["Rossi", "Bianchi", "Ferrari", "Colombo", "Müller", "Esposito"],
    "en": ["Smith", "Johnson", "Brown", "O'Neill", "Tremblay", "Côté", "Müller"],
}

# Company names per country; lists are shorter than the number of companies
# drawn for CH/DE so that some customer names repeat (sort-tie tests).
COMPANIES = {
    "CH": ["Müller Informatik AG", "Alpenblick Immobilien AG", "Zürcher Treuhand AG",
           "Bäckerei Gödel GmbH", "Hôtel Bellevue SA", "Café Crème Sàrl",
           "Weber Elektro AG", "Gletscher Software GmbH", "Bärengraben Reisen AG",
           "São Paulo Café GmbH"],
    "DE": ["Nordwind Logistik GmbH", "Müller Informatik AG", "Schäfer & Söhne KG",
           "Isar Datentechnik GmbH"],
    "AT": ["Wiener Kaffeehaus GmbH", "Donau Consulting OG", "Alpenblick Immobilien AG"],
    "FR": ["Boulangerie Lefèvre SARL", "Lumière Conseil SAS", "Côte d'Azur Voyages SA"],
    "IT": ["Rossi & Figli S.r.l.", "Dolce Vita S.p.A.", "Caffè Milano S.r.l."],
    "US": ["Acme Widgets Inc.", "Brooklyn Bagel Co.", "Golden Gate Analytics LLC"],
    "CA": ["Maple Leaf Consulting Ltd.", "Érable Numérique Inc.", "Northern Lights Media Inc."],
}

DESCRIPTIONS = ["Key account", "Webhosting customer since 2015", "Pays by invoice",
                "Migrated from legacy CRM", "Prefers contact by e-mail"]

PO_BOX = {
    "CH": ["Postfach %d", "Case postale %d"], "DE": ["Postfach %d"], "AT": ["Postfach %d"],
    "FR": ["BP %d"], "IT": ["Casella postale %d"], "US": ["PO Box %d"], "CA": ["PO Box %d"],
}

PHONE_CC = {"CH": "41", "DE": "49", "AT": "43", "FR": "33", "IT": "39", "US": "1", "CA": "1"}
MOBILE_PREFIX = {"CH": ["76", "78", "79"], "DE": ["151", "160", "171"], "AT": ["664", "676"],
                 "FR": ["6", "7"], "IT": ["333", "347"], "US": None, "CA": None}

# Fixed per-customer overrides.  US/CA customers are fixed so the set is
# stable; the special postalAddress cases test escaping and multi-line values.
FIXED_CITY = {
    5000014: "New York", 5000027: "San Francisco", 5000039: "Boston", 5000052: "New York",
    5000019: "Montréal", 5000033: "Toronto", 5000045: "Vancouver", 5000058: "Québec",
    5000001: "Bern", 5000007: "Bern", 5000023: "Zürich", 5000036: "Zürich",
}
FIXED_STREET_LINES = {
    5000023: ["Ca$hflow-Allee 7"],                 # literal '$' -> written as \24
    5000007: ["c/o Muster AG", "Hauptgasse 3"],    # two-line postalAddress
    5000036: ["Gebäude B, 3. Stock", "Technoparkstrasse 1"],
    5000052: ["Suite 1200", "350 Fifth Avenue"],
}
FIXED_COMPANY = {5000001: "Müller Informatik AG"}
NORTH_AMERICA = {"US", "CA"}


def region_of(lang):
    if lang in ("en-US", "en-CA", "en-GB"):
        return "en"
    return lang.split("-")[0]


# ---------------------------------------------------------------------------
# Generators
# ---------------------------------------------------------------------------


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.used_mails = set()

    def digits(self, n):
        return "".join(str(self.rng.randint(0, 9)) for _ in range(n))

    def phone(self, country, area):
        cc = PHONE_CC[country]
        if country in NORTH_AMERICA:
            return "+1 %s 555 01%s" % (area, self.digits(2))
        if country == "CH":
            return "+41 %s %s %s %s" % (area, self.digits(3), self.digits(2), self.digits(2))
        if country == "FR":
            return "+33 %s %s %s %s %s" % (area, self.digits(2), self.digits(2),
                                           self.digits(2), self.digits(2))
        return "+%s %s %s %s" % (cc, area, self.digits(3), self.digits(4))

    def mobile(self, country, area):
        prefixes = MOBILE_PREFIX[country]
        if prefixes is None:
            return "+1 %s 555 01%s" % (area, self.digits(2))
        p = self.rng.choice(prefixes)
        if country == "CH":
            return "+41 %s %s %s %s" % (p, self.digits(3), self.digits(2), self.digits(2))
        if country == "FR":
            return "+33 %s %s %s %s %s" % (p, self.digits(2), self.digits(2),
                                           self.digits(2), self.digits(2))
        return "+%s %s %s %s" % (PHONE_CC[country], p, self.digits(3), self.digits(4))

    def unique_mail(self, local, domain):
        mail = "%s@%s" % (local, domain)
        n = 2
        while mail in self.used_mails:
            mail = "%s%d@%s" % (local, n, domain)
            n += 1
        self.used_mails.add(mail)
        return mail

    def street_lines(self, style):
        street = self.rng.choice(STREETS[style])
        if style in NUMBER_FIRST:
            number = self.rng.randint(1, 999 if style in ("us_en", "ca_en", "ca_fr") else 120)
            return ["%d %s" % (number, street)]
        return ["%s %d" % (street, self.rng.randint(1, 120))]

    def person(self, lang):
        region = region_of(lang)
        given, gender = self.rng.choice(GIVEN[region])
        sn = self.rng.choice(SURNAMES[region])
        return given, sn, gender

    def address(self, city, company=None, person=None, street_lines=None, rich=True,
                company_locals=("info", "office", "billing")):
        """Return a dict of sstAddress attribute values."""
        country, zips, st, area, lang, style = CITIES[city]
        given, sn, gender = person if person else self.person(lang)
        lines = street_lines if street_lines else self.street_lines(style)
        if company:
            slug = ascii_slug(company, "-")
            domain = "%s.example.com" % slug
            local = self.rng.choice(list(company_locals) + [ascii_slug(given) or "contact"])
        else:
            domain = self.rng.choice(["example.com", "example.net", "example.org"])
            local = "%s.%s" % (ascii_slug(given), ascii_slug(sn))
        addr = {
            "sstGender": gender,
            "givenName": given,
            "sn": sn,
            "o": company,
            "postalAddress": postal_address(lines),
            "postOfficeBox": None,
            "postalCode": self.rng.choice(zips),
            "l": city,
            "st": st,
            "c": country,
            "preferredLanguage": lang,
            "mail": self.unique_mail(local, domain),
            "telephoneNumber": None,
            "mobile": None,
            "sstWebsiteURL": None,
        }
        if rich:
            if company or self.rng.random() < 0.6:
                addr["telephoneNumber"] = self.phone(country, area)
            if self.rng.random() < 0.4:
                addr["mobile"] = self.mobile(country, area)
            if company and self.rng.random() < 0.7:
                addr["sstWebsiteURL"] = "https://www.%s/" % domain
            if self.rng.random() < 0.15:
                addr["postOfficeBox"] = self.rng.choice(PO_BOX[country]) % self.rng.randint(10, 9999)
        return addr


ADDRESS_ATTR_ORDER = ["sstGender", "givenName", "sn", "o", "postalAddress", "postOfficeBox",
                      "postalCode", "l", "st", "c", "preferredLanguage", "mail",
                      "telephoneNumber", "mobile", "sstWebsiteURL"]


def address_entry(out, dn, ou, addr):
    attrs = [("objectClass", "top"), ("objectClass", "organizationalUnit"),
             ("objectClass", "sstAddress"), ("ou", ou)]
    attrs += [(a, addr[a]) for a in ADDRESS_ATTR_ORDER]
    write_entry(out, dn, attrs)


def build():
    gen = Gen(SEED)
    rng = gen.rng
    out = ["# Generated by scripts/gen-demo-ldif.py -- do not edit by hand.",
           "# Regenerate with: python3 scripts/gen-demo-ldif.py > ldif/demo.ldif",
           ""]
    summary = {"resellers": 0, "reseller_children": 0, "customers": 0,
               "billing": 0, "shipping": [], "people": 0}

    # --- customer-level flags (drawn up-front so they are stable) ----------
    uids = list(range(FIRST_CUSTOMER_UID, FIRST_CUSTOMER_UID + NUM_CUSTOMERS))
    company_set = set(rng.sample(uids, NUM_CUSTOMERS // 2)) | set(FIXED_COMPANY)
    inactive_set = set(rng.sample([u for u in uids if u != FIRST_CUSTOMER_UID], 5))
    ext_set = sorted(rng.sample(uids, NUM_CUSTOMERS // 3))
    ext_ids = dict(zip(ext_set, ("CRM-%d" % n for n in sorted(rng.sample(range(10001, 10999),
                                                                        len(ext_set))))))
    shipping_set = set(rng.sample(uids, 15))
    desc_set = set(rng.sample(uids, 8))
    country_pool = ["CH"] * 10 + ["DE"] * 4 + ["AT"] * 2 + ["FR"] * 2 + ["IT"] * 2

    # --- resellers ----------------------------------------------------------
    resellers = [
        ("4000001", "Alpine Hosting AG", "Bern", ("Jürg", "Brunner", "m"),
         ["Bundesplatz 3"], "+41 31 310 20 00"),
        ("4000002", "Nordlicht IT GmbH", "Hamburg", ("Wiebke", "Sørensen", "f"),
         ["Mönckebergstraße 11"], "+49 40 3250 7700"),
        ("4000003", "Maple Cloud Inc.", "Toronto", ("Zoë", "Tremblay", "f"),
         ["100 King Street West"], "+1 416 555 0100"),
    ]

    customer_uid = FIRST_CUSTOMER_UID
    for rid, rname, rcity, rperson, rlines, rphone in resellers:
        rdn = "uid=%s,%s" % (rid, RESELLER_OU)
        write_entry(out, rdn, [
            ("objectClass", "top"), ("objectClass", "sstReseller"),
            ("objectClass", "sstRelationship"),
            ("uid", rid), ("sstBelongsToResellerUID", rid), ("sstIsCompany", "TRUE"),
            ("sstIsActive", "TRUE"), ("o", rname),
        ])
        summary["resellers"] += 1
        raddr = gen.address(rcity, company=rname, person=rperson, street_lines=rlines,
                            rich=False)
        raddr["telephoneNumber"] = rphone
        raddr["sstWebsiteURL"] = "https://www.%s.example.com/" % ascii_slug(rname, "-")
        address_entry(out, "ou=address," + rdn, "address", raddr)
        write_entry(out, "ou=customers," + rdn, [
            ("objectClass", "top"), ("objectClass", "organizationalUnit"),
            ("ou", "customers"),
        ])
        summary["reseller_children"] += 2

        # --- customers of this reseller ------------------------------------
        for _ in range(CUSTOMERS_PER_RESELLER):
            cuid = customer_uid
            customer_uid += 1
            is_company = cuid in company_set
            city = FIXED_CITY.get(cuid)
            if city is None:
                city = rng.choice(CITY_POOL[rng.choice(country_pool)])
            country = CITIES[city][0]
            company = None
            if is_company:
                company = FIXED_COMPANY.get(cuid) or rng.choice(COMPANIES[country])
            billing = gen.address(city, company=company,
                                  street_lines=FIXED_STREET_LINES.get(cuid))

            cdn = "uid=%d,ou=customers,%s" % (cuid, rdn)
            attrs = [("objectClass", "top"), ("objectClass", "sstCustomer"),
                     ("objectClass", "sstRelationship"),
                     ("uid", cuid), ("sstIsCompany", bool_str(is_company)),
                     ("sstIsActive", bool_str(cuid not in inactive_set)),
                     ("sstBelongsToResellerUID", rid)]
            if is_company:
                attrs.append(("o", company))
            else:
                attrs += [("givenName", billing["givenName"]), ("sn", billing["sn"])]
            attrs.append(("sstExternalID", ext_ids.get(cuid)))
            if cuid in desc_set:
                attrs.append(("description", rng.choice(DESCRIPTIONS)))
            write_entry(out, cdn, attrs)
            summary["customers"] += 1

            address_entry(out, "ou=address," + cdn, "address", billing)
            summary["billing"] += 1

            if cuid in shipping_set:
                # Different address: usually another city in the same country.
                choices = [c for c in CITY_POOL[country] if c != city] or [city]
                scity = rng.choice(choices)
                person = (billing["givenName"], billing["sn"], billing["sstGender"])
                if company and rng.random() < 0.5:
                    person = None  # a different contact person at the warehouse
                shipping = gen.address(scity, company=company, person=person, rich=False,
                                       company_locals=("shipping", "warehouse", "logistics"))
                if rng.random() < 0.5:
                    shipping["telephoneNumber"] = gen.phone(CITIES[scity][0], CITIES[scity][3])
                address_entry(out, "ou=shipping," + cdn, "shipping", shipping)
                summary["shipping"].append(cuid)

    # --- people -------------------------------------------------------------
    people = [
        # uid, given, sn, gender, mail, password, lang, tz, extra attrs, active
        ("5000901", "Provider", "Administrator", "n", "admin@stoney-cloud.org",
         "admin-secret", "en-GB", "+0100", [("sstBelongsToUID", "1")], True),
        ("5000902", "Jürg", "Brunner", "m", "reseller1@example.com",
         "reseller1-secret", "de-CH", "+0100", [("sstBelongsToResellerUID", "4000001")], True),
        ("5000903", "Wiebke", "Sørensen", "f", "reseller2@example.com",
         "reseller2-secret", "de-DE", "+0100", [("sstBelongsToResellerUID", "4000002")], True),
        ("5000904", "Zoë", "Tremblay", "f", "reseller3@example.com",
         "reseller3-secret", "en-CA", "-0500", [("sstBelongsToResellerUID", "4000003")], True),
        ("5000905", "Françoise", "Müller", "f", "customer@example.com",
         "customer-secret", "fr-CH", "+0100",
         [("sstBelongsToResellerUID", "4000001"), ("sstBelongsToCustomerUID", "5000001")], True),
        ("5000906", "Björn", "Gödel", "m", "inactive@example.com",
         "inactive-secret", "de-DE", "+0100", [("sstBelongsToResellerUID", "4000002")], False),
    ]
    for uid, given, sn, gender, mail, password, lang, tz, extra, active in people:
        # Fixed 8-byte salt per user, derived from the uid (deterministic).
        salt = hashlib.sha256(("stoney-demo-salt-" + uid).encode("ascii")).digest()[:8]
        attrs = [("objectClass", "top"), ("objectClass", "sstPerson"),
                 ("uid", uid), ("cn", "%s %s" % (given, sn)), ("givenName", given),
                 ("sn", sn), ("sstGender", gender), ("mail", mail),
                 ("preferredLanguage", lang), ("sstTimeZoneOffset", tz),
                 ("sstIsActive", bool_str(active)), ("userPassword", ssha(password, salt))]
        attrs += extra
        write_entry(out, "uid=%s,%s" % (uid, PEOPLE_OU), attrs)
        summary["people"] += 1

    return out, summary


def main():
    lines, summary = build()
    sys.stdout.write("\n".join(lines))
    if "--summary" in sys.argv[1:]:
        sys.stderr.write("%r\n" % (summary,))


if __name__ == "__main__":
    main()
