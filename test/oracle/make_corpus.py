#!/usr/bin/env python3
"""Generate the tokenizer parity corpus: test/fixtures/tokenizer_corpus.txt.

Purpose
-------
The corpus is a large, deliberately nasty set of input texts used to compare
pgbert's C BERT WordPiece tokenizer against Hugging Face ``tokenizers``
(the reference "oracle").  Every line is one input text.  It mixes real text
(gettext translations in ~190 languages, English e-mail) with synthetic
edge cases: CJK ranges (including HF's 0x2B820..0x2B91F range typo),
accents in NFC/NFD, combining-mark runs and zalgo, Indic and other complex
scripts, emoji sequences, control/format/private-use/unassigned code points,
all kinds of whitespace, compatibility forms, scripts newer than Unicode 8,
words around the 100-char WordPiece limit, punctuation/symbol runs, special
tokens written in the text, the HF BERT unit-test strings, and random soup.

How to run
----------
From the repository root::

    python3 test/oracle/make_corpus.py

It overwrites ``test/fixtures/tokenizer_corpus.txt``, prints per-section
line counts and the total lines/bytes/sha256, and reads the file back to
verify it.  Python 3.11, standard library only; all randomness comes from
``random.Random(42)``, so the output is byte-for-byte reproducible on the
same inputs (Python 3.11 ships unicodedata 14.0.0, which is used to build
some character pools).

Inputs: it needs the gettext catalogues under
``/usr/share/locale/*/LC_MESSAGES/*.mo`` and the SpamAssassin data at
``/work/shared/data/spamassassin.csv.gz`` (columns id, source, label,
subject, body).  Those depend on the machine, so the script is run by
developers and its *output is committed*; tests only read the fixture.

File format
-----------
UTF-8, one text per line, lines separated by ``\\n`` only (read it with
``newline='\\n'`` / split on LF only: U+2028, U+2029, U+0085 and U+001C..1F
appear raw inside lines).  Each text is escaped as in PostgreSQL COPY text
format: backslash -> ``\\\\``, TAB -> ``\\t``, LF -> ``\\n``, CR -> ``\\r``,
VT -> ``\\v``, FF -> ``\\f``, BS -> ``\\b``; everything else is raw.  Texts
never contain U+0000 or surrogates.  A few texts are empty (empty lines);
the last line is never empty.
"""

import glob
import itertools
import gzip
import hashlib
import csv
import os
import random
import struct
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from copytext import escape, unescape  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_PATH = os.path.join(REPO, "test", "fixtures", "tokenizer_corpus.txt")
MO_GLOB = "/usr/share/locale/*/LC_MESSAGES/*.mo"
SPAM_PATH = "/work/shared/data/spamassassin.csv.gz"

rng = random.Random(42)

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def rand_cp(lo, hi):
    """Random code point in [lo, hi], never NUL, never a surrogate."""
    while True:
        cp = rng.randint(lo, hi)
        if cp != 0 and not is_surrogate(cp):
            return chr(cp)


def rand_from_ranges(ranges):
    lo, hi = rng.choice(ranges)
    return rand_cp(lo, hi)


def chars_in(lo, hi, cat_prefix=None):
    out = []
    for cp in range(lo, hi + 1):
        if cp == 0 or is_surrogate(cp):
            continue
        c = chr(cp)
        if cat_prefix is None or unicodedata.category(c).startswith(cat_prefix):
            out.append(c)
    return out


def nfc(s):
    return unicodedata.normalize("NFC", s)


def nfd(s):
    return unicodedata.normalize("NFD", s)


ASCII_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
ASCII_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

EN_WORDS = []  # filled from the SpamAssassin data (section 2)


def en_word():
    return rng.choice(EN_WORDS)


def en_words(k):
    return " ".join(en_word() for _ in range(k))


def ascii_word(lo=2, hi=10):
    return "".join(rng.choice(ASCII_LOWER) for _ in range(rng.randint(lo, hi)))


def maybe_case(w):
    r = rng.random()
    if r < 0.15:
        return w.upper()
    if r < 0.35:
        return w[:1].upper() + w[1:]
    return w


# ---------------------------------------------------------------------------
# section 1: gettext .mo catalogues
# ---------------------------------------------------------------------------

def parse_mo(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 20:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0x950412DE:
        e = "<"
    elif magic == 0xDE120495:
        e = ">"
    else:
        return []
    _ver, n, ooff, toff = struct.unpack(e + "4I", data[4:20])
    entries = []
    charset = "utf-8"
    for i in range(n):
        olen, opos = struct.unpack(e + "2I", data[ooff + 8 * i: ooff + 8 * i + 8])
        tlen, tpos = struct.unpack(e + "2I", data[toff + 8 * i: toff + 8 * i + 8])
        msgid = data[opos: opos + olen]
        msgstr = data[tpos: tpos + tlen]
        if msgid == b"":
            for hl in msgstr.split(b"\n"):
                hl = hl.strip().lower()
                if hl.startswith(b"content-type:") and b"charset=" in hl:
                    cs = hl.split(b"charset=", 1)[1].split(b";")[0].strip()
                    charset = cs.decode("ascii", "replace") or "utf-8"
            continue
        entries.append((msgid, msgstr))
    out = []
    for msgid, msgstr in entries:
        try:
            mid = msgid.split(b"\x00")[0].decode(charset)
        except (LookupError, UnicodeDecodeError):
            mid = None
        for part in msgstr.split(b"\x00"):
            if not part:
                continue
            try:
                s = part.decode(charset)
            except (LookupError, UnicodeDecodeError):
                continue
            if s == mid:
                continue
            out.append(s)
    return out


def section_gettext(target=8100, maxlen=300):
    files = sorted(glob.glob(MO_GLOB))
    per_lang = {}
    for path in files:
        lang = path.split(os.sep)[-3]
        strings = per_lang.setdefault(lang, {})
        for s in parse_mo(path):
            s = s.replace("\x00", "")
            if any(is_surrogate(ord(c)) for c in s):
                continue
            s = s[:maxlen]
            if s.strip():
                strings[s] = None
    langs = sorted(l for l, d in per_lang.items() if d)
    pools = {}
    for lang in langs:
        # weighted random order (Efraimidis-Spirakis), favouring longer strings so
        # that real sentences are not crowded out by short country/language names
        keyed = [(rng.random() ** (1.0 / (5 + min(len(s), 200)) ** 2), s) for s in per_lang[lang]]
        keyed.sort(key=lambda kv: kv[0], reverse=True)
        pools[lang] = [s for _, s in keyed]
    # round-robin water filling: equal cap per language, global de-dup
    seen = {}
    chosen = {lang: [] for lang in langs}
    total = 0
    r = 0
    maxn = max(len(p) for p in pools.values())
    while total < target and r < maxn:
        for lang in langs:
            if total >= target:
                break
            p = pools[lang]
            if r < len(p) and p[r] not in seen:
                seen[p[r]] = None
                chosen[lang].append(p[r])
                total += 1
        r += 1
    out = []
    for lang in langs:
        out.extend(chosen[lang])
    print("  gettext: %d .mo files, %d languages with text, per-language cap %d"
          % (len(files), len(langs), r), file=sys.stderr)
    return out


# ---------------------------------------------------------------------------
# section 2: English e-mail (SpamAssassin)
# ---------------------------------------------------------------------------

def load_spam():
    csv.field_size_limit(sys.maxsize)
    rows = []
    with gzip.open(SPAM_PATH, "rt", encoding="utf-8", errors="replace", newline="") as f:
        for row in csv.DictReader(f):
            rows.append({
                "id": row["id"],
                "label": row["label"],
                "subject": (row["subject"] or "").replace("\x00", ""),
                "body": (row["body"] or "").replace("\x00", ""),
            })
    return rows


def section_english(rows):
    out = []
    subjects = [r["subject"] for r in rows if r["subject"].strip()]
    uniq = list(dict.fromkeys(subjects))
    out.extend(rng.sample(uniq, min(700, len(uniq))))
    bodies = [r["body"] for r in rows if len(r["body"]) >= 60]
    for _ in range(1300):
        b = rng.choice(bodies)
        ln = rng.randint(50, 400)
        if len(b) <= ln:
            out.append(b)
            continue
        st = rng.randint(0, len(b) - ln)
        out.append(b[st: st + ln])
    longs = [r["body"] for r in rows
             if r["label"] == "ham" and 3000 <= len(r["body"]) <= 6000]
    out.extend(rng.sample(longs, 5))
    # vocabulary for other sections
    vocab = {}
    for r in rows:
        for w in (r["subject"] + " " + r["body"][:2000]).split():
            w = w.strip(".,;:!?\"'()[]<>")
            if 2 <= len(w) <= 12 and w.isascii() and w.isalpha():
                vocab[w.lower()] = None
    EN_WORDS.extend(sorted(vocab))
    return out


# ---------------------------------------------------------------------------
# section 3: CJK
# ---------------------------------------------------------------------------

CJK_RANGES = [
    ("URO", 0x4E00, 0x9FFF), ("ExtA", 0x3400, 0x4DBF),
    ("ExtB", 0x20000, 0x2A6DF), ("ExtC", 0x2A700, 0x2B73F),
    ("ExtD", 0x2B740, 0x2B81F), ("ExtE", 0x2B820, 0x2CEAF),
    ("ExtF", 0x2CEB0, 0x2EBEF), ("ExtI", 0x2EBF0, 0x2EE5F),
    ("ExtG", 0x30000, 0x3134F), ("ExtH", 0x31350, 0x323AF),
    ("ExtJ", 0x323B0, 0x3347F),
    ("CompatBMP", 0xF900, 0xFAFF), ("CompatSup", 0x2F800, 0x2FA1F),
]
CJK_TYPO = (0x2B820, 0x2B91F)
KANA_RANGES = [(0x3041, 0x3096), (0x3099, 0x309F), (0x30A0, 0x30FF), (0x31F0, 0x31FF),
               (0x1B000, 0x1B122), (0x1B132, 0x1B132), (0x1B150, 0x1B152), (0x1B155, 0x1B155),
               (0x1B164, 0x1B167)]
HANGUL_RANGES = [(0xAC00, 0xD7A3)]
JAMO_RANGES = [(0x1100, 0x11FF), (0x3131, 0x318E), (0xA960, 0xA97C), (0xD7B0, 0xD7FB)]
CJK_PUNCT = [(0x3000, 0x303F), (0xFF01, 0xFF0F), (0xFF1A, 0xFF20)]
CJK_MISC = [(0x2E80, 0x2EFF), (0x2F00, 0x2FDF), (0x2FF0, 0x2FFF), (0x31C0, 0x31EF),
            (0x3200, 0x32FF), (0x3300, 0x33FF), (0x3190, 0x319F), (0x4DC0, 0x4DFF)]

CJK_SENTENCES = [
    "我爱北京天安门。", "中文分词测试：你好，世界！", "這是繁體中文的句子。",
    "日本語のテキスト、カタカナ・ひらがな混じり。", "東京タワーは333メートルです。",
    "한국어 텍스트입니다. 안녕하세요!", "서울특별시 강남구", "ＣＪＫ　全角スペース　混在",
    "ah\u535A\u63A8zz", "Unicode标准第15版", "iPhone15のレビュー", "GPT-4は強い",
    "漢字かなまじり文", "ㄱㄴㄷㄹ ㅏㅑㅓㅕ", "〈括弧〉《書名》「引用」『二重』【見出し】〔亀甲〕",
    "価格：¥1,000（税込）", "第3章　第２節", "一二三四五六七八九十百千万億",
    "Python是一种编程语言", "ＡＢＣ株式会社", "ｱｲｳｴｵ ｶﾞｷﾞｸﾞ", "〇〡〢〣〤〥〦〧〨〩",
    "々〆〻ゝゞヽヾ", "㈱㈲㍿㋀㋁㍻㍼", "⺀⺁⼀⼁⼂", "⿰⿱⿲", "ㆍㆎ", "각",
]


def section_cjk():
    out = []
    # every code point of the HF typo range, glued between ASCII letters
    for cp in range(CJK_TYPO[0], CJK_TYPO[1] + 1):
        c = chr(cp)
        form = rng.randrange(5)
        if form == 0:
            out.append("a" + c + "b")
        elif form == 1:
            out.append(ascii_word() + c + ascii_word())
        elif form == 2:
            out.append(en_word() + " " + en_word() + c + en_word() + " " + en_word())
        elif form == 3:
            out.append(c + ascii_word() + c)
        else:
            out.append(maybe_case(en_word()) + c + chr(rng.randint(*CJK_TYPO)) + "1" + c + ".")
    for _ in range(120):
        parts = []
        for _ in range(rng.randint(2, 10)):
            w = en_word() if rng.random() < 0.5 else ascii_word(1, 4)
            parts.append(w + "".join(chr(rng.randint(*CJK_TYPO)) for _ in range(rng.randint(1, 3))))
        out.append(rng.choice(["", " "]).join(parts) + ascii_word(1, 3))
    out.append("a\U0002B820b")
    out.append("x\U0002B91Fy x\U0002B920y x\U0002B81Fy x\U0002CEAFy x\U0002CEB0y")
    # every other range: boundaries and random samples, glued and spaced
    for name, lo, hi in CJK_RANGES:
        edges = [lo - 1, lo, lo + 1, hi - 1, hi, hi + 1]
        edges = [chr(c) for c in edges if c > 0 and not is_surrogate(c)]
        out.append("x" + "y x".join(edges) + "y")
        out.append(" ".join(edges))
        out.append("".join(edges))
        for _ in range(55):
            run = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 20)))
            form = rng.randrange(6)
            if form == 0:
                out.append(run)
            elif form == 1:
                out.append(ascii_word() + run + ascii_word())
            elif form == 2:
                out.append(en_words(rng.randint(1, 4)) + " " + run + " " + en_words(rng.randint(1, 4)))
            elif form == 3:
                out.append(" ".join(run))
            elif form == 4:
                out.append(run + "。" + en_word() + run[:1] + "123" + run[-1:] + "！")
            else:
                out.append(maybe_case(en_word()) + run[:1] + en_word() + "，" + run)
    # kana / hangul / jamo / punctuation / misc, mixed with Latin
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 10)):
            kind = rng.randrange(8)
            k = rng.randint(1, 8)
            if kind == 0:
                parts.append("".join(rand_from_ranges(KANA_RANGES) for _ in range(k)))
            elif kind == 1:
                parts.append("".join(rand_from_ranges(HANGUL_RANGES) for _ in range(k)))
            elif kind == 2:
                parts.append("".join(rand_from_ranges(JAMO_RANGES) for _ in range(k)))
            elif kind == 3:
                parts.append("".join(rand_from_ranges(CJK_PUNCT) for _ in range(rng.randint(1, 3))))
            elif kind == 4:
                parts.append("".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(k)))
            elif kind == 5:
                parts.append(en_word())
            elif kind == 6:
                parts.append("".join(rand_from_ranges(CJK_MISC) for _ in range(rng.randint(1, 4))))
            else:
                parts.append(str(rng.randint(0, 99999)))
        out.append(rng.choice(["", " ", "", "\u3000"]).join(parts))
    # real-ish sentences, Hangul in NFC and NFD (conjoining jamo)
    for s in CJK_SENTENCES:
        out.append(s)
        out.append(nfd(s))
        out.append(s + " " + en_word() + s[:3])
    for _ in range(150):
        s = "".join(rand_from_ranges(HANGUL_RANGES) for _ in range(rng.randint(1, 12)))
        out.append(rng.choice([nfd(s), s + " " + nfd(s), en_word() + nfd(s) + en_word()]))
    return out


# ---------------------------------------------------------------------------
# section 4: accented Latin, Greek, Turkish, Cyrillic, NFC singletons
# ---------------------------------------------------------------------------

ACCENT_SENTENCES = [
    "Où est la bibliothèque ? Ça coûte cher : naïve façade, crème brûlée, cœur, Œuvre, déjà-vu.",
    "¿Dónde está el niño? ¡Mañana será otro día! Pingüino, acción, corazón.",
    "Não há órgãos; coração, pão, avó, avô, ações, Conceição.",
    "Straße, Größe, Übergröße, Fußgängerübergang, Äpfel, Öl, STRASSE, GROẞE, ẞ, ß.",
    "Zażółć gęślą jaźń; Łódź, Kraków, Gdańsk, ŹDŹBŁO.",
    "Příliš žluťoučký kůň úpěl ďábelské ódy. ŽLUŤOUČKÝ KŮŇ",
    "Árvíztűrő tükörfúrógép, ŐRÜLT, őrült, űr.",
    "Științe, țară, Ș Ț (virgulă), ş ţ (sedilă), ÎNCĂ, încă.",
    "Þórður, Ðað, æði, ÆÐI, Ísland, Reykjavík.",
    "Ærø, Ålborg, øl, ØL, blåbærsyltetøy.",
    "İstanbul, Iğdır, ılık, IŞIK, şoför, DİYARBAKIR, Ağrı, İzmir, ıİiI.",
    "Ąžuolas, Čiurlionis, ėjo, įėjimas, šešios, ūkis, žąsis, ĮĖJIMAS, Ųų.",
    "Ģirts, ķēniņš, ļoti, ņemt, Ŗ ŗ, ĶĒNIŅŠ.",
    "Tiếng Việt có dấu: Nguyễn, Đặng, người, phở, trường, ở, ữ, ặ, ỹ, Ỵ, Hà Nội, THƯỜNG.",
    "Việt Nam Cộng hòa xã hội chủ nghĩa, Độc lập – Tự do – Hạnh phúc.",
    "Esperanto: ĉiuĵaŭde, ĝis, ĥoro, ŝipo, Ĉ Ĝ Ĥ Ĵ Ŝ Ŭ.",
    "Ελληνικά: Ἀθῆναι, ἀρχή, ΆΈΉΊΌΎΏ, ΐΰ, ϊϋ, ὁδός, ᾧ, ᾼ, ῼ.",
    "ΟΔΟΣ ΣΊΣΥΦΟΣ ΌΣΟ ΑΣ Σ ΣΑΣ. ΣΣ ΑΣ.Β ΑΣ1 ΑΣ\u0301 ΑΣ\u00ad ΆΣΣ ΜΈΣΑ",
    "за́мок замо́к, ё, Ё, й, Й, ї, ў, Ѐ, ѝ, пра́вда, Москва́, ЁЛКА, ёлка.",
    "Українська: їжак, ґанок, Ґ, Її, Єє; Беларуская: ўсё; Српски: ђ, ћ, џ, Љ, Њ.",
    "Ǆ ǅ ǆ Ǉ ǈ ǉ Ǌ ǋ ǌ Ǳ ǲ ǳ ŉ ǰ ẖ ẗ ẘ ẙ ẚ ſ ﬀ ﬅ ﬆ",
    "Kelvin \u212A, Ångström \u212B, Ohm \u2126, \u1FEF, \u037E, \u0387, a\u0340 a\u0341 a\u0343 a\u0344",
    "ϐ ϑ ϕ ϖ ϰ ϱ ϵ ϴ ΐ ΰ µ Μ ͅ ι ᾳ ᾼ Ω Ω ω",
    "Dvořák, Škoda, Gödel, Erdős, Čapek, Đoković, Müller, Sørensen, Ibáñez, Çelik, Ōsaka, Māori.",
    "résumé naïve café jalapeño piñata façade über coöperate Zoë Noël Chloë",
    "\u0958\u0959 \u095A \u2329\u232A \u0374 \u1F71 \u2000\u2001 \uF900\uFA10 \u0340\u0341",
]

ACCENT_WORDS = [w.strip(".,;:!?¿¡()") for s in ACCENT_SENTENCES for w in s.split()]
ACCENT_WORDS = [w for w in ACCENT_WORDS if w]

GREEK_SIGMA = ["ΟΔΟΣ", "ΣΊΣΥΦΟΣ", "ΌΣΟ", "ΑΣ", "Σ", "ΣΑΣ", "ΣΣ", "ΑΣ.", "ΑΣΑ", "ΟΔΟΣ.", "ΟΔΟΣ'",
               "ΟΔΟΣ\u0301", "ΟΔΟΣ\u00ad", "ΟΔΟΣ1", "ΟΔΟΣ\u200b", "ΟΔΟΣ-ΟΔΟΣ", "'Σ'", "ΑΣ\u0345",
               "ΑΣ\u0301Α", "\u0301Σ", "ΑΣ\u2019Α", "ΑΣ:Α", "ΑΣΣΣ", "ΣΑΣ\u00ADΣΑΣ", "Ὀδυσσεύς", "ΟΔΥΣΣΕΥΣ"]
TURKISH = ["İ", "ı", "İİİ", "ııı", "İstanbul", "ISTANBUL", "istanbul", "DİYARBAKIR", "ılık", "IĞDIR",
           "i\u0307", "I\u0307", "İ\u0301", "İ\u0300", "ı\u0307", "KİTAP", "kıtap", "AĞAÇ"]
NFC_SINGLETONS = ["\u212B", "\u2126", "\u212A", "\u1FEF", "\u037E", "\u0387", "\u0340", "\u0341",
                  "\u0343", "\u0344", "\u0374", "\u1F71", "\u1FFD", "\u2000", "\u2001", "\u2329",
                  "\u232A", "\uF900", "\uFA10", "\u0958", "\u2ADC", "\uFB1D", "\uFB2A", "\U0002F800",
                  "\u1E9B\u0323", "\u1FEE", "\u1FED", "\u0F73", "\u0F75", "\u0F81"]

LATIN_ACCENTED = chars_in(0xC0, 0x24F, "L") + chars_in(0x1E00, 0x1EFF, "L") + chars_in(0x2C60, 0x2C7F, "L") \
    + chars_in(0xA720, 0xA7FF, "L")


def section_accents():
    out = []
    for s in ACCENT_SENTENCES:
        for f in (s, nfc(s), nfd(s), s.upper(), s.lower(), nfd(s.upper()), unicodedata.normalize("NFKD", s)):
            out.append(f)
    for w in GREEK_SIGMA + TURKISH:
        out.append(w)
        out.append(nfd(w))
        out.append(en_word() + " " + w + " " + en_word())
        out.append(w + w.lower() + " " + w)
    for c in NFC_SINGLETONS:
        out.append(c)
        out.append("x" + c + "y")
        out.append(en_word() + " " + c + " " + en_word() + c)
    for _ in range(450):
        words = []
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.4:
                w = rng.choice(ACCENT_WORDS)
            else:
                w = "".join(rng.choice(LATIN_ACCENTED) if rng.random() < 0.4 else rng.choice(ASCII_LOWER)
                            for _ in range(rng.randint(2, 12)))
            w = maybe_case(w)
            form = rng.randrange(4)
            if form == 1:
                w = nfd(w)
            elif form == 2:
                w = nfc(w)
            words.append(w)
        out.append(" ".join(words))
    for _ in range(150):
        w = rng.choice(GREEK_SIGMA + TURKISH + ACCENT_WORDS)
        k = rng.randint(1, 4)
        out.append(rng.choice(["", " ", "-", "."]).join(rng.choice([w, nfd(w), w.upper(), w.lower()])
                                                         for _ in range(k)))
    return out


# ---------------------------------------------------------------------------
# section 5: combining marks
# ---------------------------------------------------------------------------

MARK_RANGES = [(0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF), (0xFE20, 0xFE2F)]
MN_MARKS = [c for lo, hi in MARK_RANGES for c in chars_in(lo, hi, "M")]
PERM_MARKS = ["\u0316", "\u0301", "\u0327", "\u031B", "\u0345", "\u0300", "\u0323", "\u0308",
              "\u0334", "\u0338", "\u035C", "\u035D", "\u0315", "\u031A", "\u05B0", "\u0651",
              "\u093C", "\u094D", "\u3099", "\u20D2", "\u1DCE", "\uFE20", "\u0F71", "\u0E38"]


def rand_mark():
    if rng.random() < 0.8:
        return rng.choice(MN_MARKS)
    return rand_from_ranges(MARK_RANGES)


def marks(n):
    return "".join(rand_mark() for _ in range(n))


def section_combining():
    out = []
    for _ in range(450):
        words = []
        for _ in range(rng.randint(1, 10)):
            w = en_word() if rng.random() < 0.7 else rng.choice(ACCENT_WORDS)
            chars = []
            for ch in w:
                chars.append(ch)
                if rng.random() < 0.3:
                    n = rng.choice([1, 1, 1, 2, 2, 3, 4, 5, rng.randint(6, 20)])
                    chars.append(marks(n))
            words.append("".join(chars))
        out.append(" ".join(words))
    # out-of-canonical-order permutations
    bases = "aeiouAEOcnsgkzω\u03b1\u0430\u05d0\u0628\u0915"
    for _ in range(60):
        b = rng.choice(bases)
        ms = rng.sample(PERM_MARKS, rng.randint(2, 4))
        perms = []
        # all permutations for <=3 marks, a sample of 8 for 4
        allp = list(itertools.permutations(ms))
        if len(allp) > 8:
            allp = rng.sample(allp, 8)
        for p in allp:
            perms.append(b + "".join(p))
        out.append(" ".join(perms))
        out.append("".join(perms))
        out.append(en_word() + perms[0] + en_word() + " " + perms[-1])
    out.append("a\u0316\u0301\u0327 a\u0301\u0316\u0327 a\u0327\u0301\u0316 a\u0327\u0316\u0301")
    # zalgo
    for _ in range(15):
        b = rng.choice(ASCII_LETTERS + "éœ中ж")
        out.append(b + marks(rng.randint(150, 400)))
    for _ in range(10):
        out.append(en_word() + " " + rng.choice(ASCII_LETTERS) + marks(rng.randint(150, 400)) + en_word()
                   + " " + en_word())
    # marks at line start, after space / punctuation / digits / CJK / emoji
    ctx = [" ", ".", ",", "!", "(", "-", "1", "9", "中", "😀", "\t", "\u3000", "\u00a0", "_", "@",
           "\u200d", "\u200b", "\u0600", "\U0002B820", "[SEP]", "''"]
    for _ in range(250):
        kind = rng.randrange(5)
        m = marks(rng.randint(1, 6))
        if kind == 0:
            out.append(m + en_word())
        elif kind == 1:
            out.append(m)
        elif kind == 2:
            out.append(en_word() + rng.choice(ctx) + m + en_word())
        elif kind == 3:
            out.append(rng.choice(ctx) + m + rng.choice(ctx) + m)
        else:
            out.append(" ".join(marks(rng.randint(1, 3)) for _ in range(rng.randint(1, 8))))
    # composed vs decomposed vs stacked
    for s in ["e\u0301", "\u00e9", "o\u0302\u0301", "\u1ed1", "\u1ee9", "u\u031b\u0301",
              "A\u030a", "\u00c5", "\u212b", "a\u034f\u0301", "a\u0301\u034f\u0301",
              "\u0399\u0308\u0301", "\u03b9\u0308\u0301", "q\u0307\u0323", "q\u0323\u0307"]:
        out.append(s)
        out.append(en_word() + s + en_word())
        out.append((s + " ") * rng.randint(2, 5))
    return out


# ---------------------------------------------------------------------------
# section 6: Indic and other complex scripts
# ---------------------------------------------------------------------------

COMPLEX_SCRIPTS = [
    ("Devanagari", 0x0900, 0x097F), ("Bengali", 0x0980, 0x09FF), ("Gurmukhi", 0x0A00, 0x0A7F),
    ("Gujarati", 0x0A80, 0x0AFF), ("Oriya", 0x0B00, 0x0B7F), ("Tamil", 0x0B80, 0x0BFF),
    ("Telugu", 0x0C00, 0x0C7F), ("Kannada", 0x0C80, 0x0CFF), ("Malayalam", 0x0D00, 0x0D7F),
    ("Sinhala", 0x0D80, 0x0DFF), ("Thai", 0x0E00, 0x0E7F), ("Lao", 0x0E80, 0x0EFF),
    ("Tibetan", 0x0F00, 0x0FFF), ("Myanmar", 0x1000, 0x109F), ("Khmer", 0x1780, 0x17FF),
    ("Arabic", 0x0600, 0x06FF), ("Hebrew", 0x0590, 0x05FF), ("Syriac", 0x0700, 0x074F),
    ("Thaana", 0x0780, 0x07BF), ("Ethiopic", 0x1200, 0x137F), ("Georgian", 0x10A0, 0x10FF),
    ("Armenian", 0x0530, 0x058F), ("Mongolian", 0x1800, 0x18AF), ("NKo", 0x07C0, 0x07FF),
    ("Javanese", 0xA980, 0xA9DF), ("Balinese", 0x1B00, 0x1B7F), ("Tifinagh", 0x2D30, 0x2D7F),
    ("Cherokee", 0x13A0, 0x13FF), ("Tagalog", 0x1700, 0x171F), ("Limbu", 0x1900, 0x194F),
    ("TaiTham", 0x1A20, 0x1AAF), ("Vedic", 0x1CD0, 0x1CFF), ("ArabicSup", 0x0750, 0x077F),
    ("ArabicExtA", 0x08A0, 0x08FF), ("Samaritan", 0x0800, 0x083F), ("Mandaic", 0x0840, 0x085F),
]

COMPLEX_WORDS = [
    "नमस्ते", "हिन्दी", "भारत", "संस्कृतम्", "क़िला", "ज़िंदगी", "प्रधानमंत्री", "विद्यालय", "धन्यवाद",
    "मराठी", "नेपाली", "क्षत्रिय", "ॐ", "।", "॥", "०१२३४५६७८९", "का", "की", "कृ", "र्", "क्‍ष", "क्‌ष",
    "বাংলা", "ভাষা", "আমার সোনার বাংলা", "কলকাতা", "ধন্যবাদ", "কো", "কৌ", "ড়", "য়",
    "ਪੰਜਾਬੀ", "ਗੁਰਮੁਖੀ", "ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ", "ਖ਼", "ગુજરાતી", "નમસ્તે", "અમદાવાદ",
    "ଓଡ଼ିଆ", "ଭାରତ", "ନମସ୍କାର", "ୋ", "ୌ", "தமிழ்", "வணக்கம்", "சென்னை", "கொழும்பு", "ஸ்ரீ", "கௌ",
    "தொ", "తెలుగు", "నమస్కారం", "హైదరాబాద్", "ೊ", "ಕನ್ನಡ", "ಬೆಂಗಳೂರು", "ನಮಸ್ಕಾರ", "ಕೋ",
    "മലയാളം", "കേരളം", "നമസ്കാരം", "കൊ", "കൌ", "ൽ", "ൻ", "സിംഹള",
    "සිංහල", "ශ්‍රී ලංකාව", "ආයුබෝවන්", "කෝ", "කෞ",
    "ภาษาไทย", "สวัสดีครับ", "กรุงเทพมหานคร", "ขอบคุณ", "น้ำ", "ที่นี่", "ผู้ใหญ่", "ฯลฯ", "๑๒๓",
    "ພາສາລາວ", "ສະບາຍດີ", "ວຽງຈັນ", "ໜ", "ໝ", "ຳ",
    "བོད་ཡིག", "བཀྲ་ཤིས་བདེ་ལེགས།", "ཀྵ", "ཨོཾ་མ་ཎི་པདྨེ་ཧཱུྃ", "ཱི", "ཱུ", "ྲྀ",
    "မြန်မာ", "မင်္ဂလာပါ", "ရန်ကုန်", "ဦ", "ကြော်",
    "ខ្មែរ", "សួស្តី", "ភ្នំពេញ", "ក៏", "ឞ",
    "اَلْعَرَبِيَّةُ", "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ", "مرحبا بالعالم", "القاهرة", "شُكْرًا",
    "فارسی", "اردو", "پاکستان", "می‌خواهم", "١٢٣٤٥", "۱۲۳۴۵", "ـــ", "لا", "ﻻ", "ﷺ", "ﷲ", "ﺍﻟﻌﺮﺑﻴﺔ",
    "؟", "،", "؛", "٪", "آ", "أ", "إ", "ؤ", "ئ",
    "בְּרֵאשִׁית בָּרָא אֱלֹהִים", "שָׁלוֹם", "עִבְרִית", "ירושלים", "שׁ", "שּׁ", "בּ", "יִ", "ײַ", "ﬠ",
    "־", "׃", "״",
    "ܠܫܢܐ ܣܘܪܝܝܐ", "ܫܠܡܐ", "ܐܵܪܵܡܵܝܵܐ", "ދިވެހިބަސް", "މާލެ", "ޝުކުރިއްޔާ",
    "አማርኛ", "ኢትዮጵያ", "ሰላም", "ქართული", "თბილისი", "ᲥᲐᲠᲗᲣᲚᲘ", "Ⴀნა", "Հայերեն", "Երևան",
    "և", "ﬓ", "ՙ", "ᠮᠣᠩᠭᠣᠯ", "ᠨ᠋", "ᠠ᠎ᠠ", "ꦧꦱꦗꦮ", "ᬩᬲᬩᬮᬶ", "ᏣᎳᎩ", "ꮳꮃꭹ", "ⵜⴰⵎⴰⵣⵉⵖⵜ", "ߒߞߏ",
]


def _script_pools(lo, hi):
    letters, mks, digits, puncts = [], [], [], []
    for cp in range(lo, hi + 1):
        c = chr(cp)
        cat = unicodedata.category(c)
        if cat.startswith("L"):
            letters.append(c)
        elif cat.startswith("M"):
            mks.append(c)
        elif cat == "Nd":
            digits.append(c)
        elif cat.startswith("P") or cat.startswith("S"):
            puncts.append(c)
    return letters, mks, digits, puncts


def section_complex():
    out = []
    for w in COMPLEX_WORDS:
        out.append(w)
        out.append(en_word() + " " + w + " " + en_word())
        out.append(rng.choice([en_word() + w + "123" + w, nfd(w) + " " + w]))
    for name, lo, hi in COMPLEX_SCRIPTS:
        letters, mks, digits, puncts = _script_pools(lo, hi)
        if not letters:
            continue
        for _ in range(22):
            words = []
            for _ in range(rng.randint(1, 12)):
                r = rng.random()
                if r < 0.05 and digits:
                    words.append("".join(rng.choice(digits) for _ in range(rng.randint(1, 5))))
                elif r < 0.1 and puncts:
                    words.append(rng.choice(puncts))
                elif r < 0.15:
                    words.append(en_word())
                elif r < 0.2 and mks:
                    words.append("".join(rng.choice(mks) for _ in range(rng.randint(1, 3))))
                else:
                    syl = []
                    for _ in range(rng.randint(1, 5)):
                        syl.append(rng.choice(letters))
                        if mks and rng.random() < 0.6:
                            syl.append(rng.choice(mks))
                            if rng.random() < 0.2:
                                syl.append(rng.choice(mks))
                    words.append("".join(syl))
            sep = "" if name in ("Thai", "Lao", "Khmer", "Myanmar", "Tibetan") and rng.random() < 0.5 else " "
            line = sep.join(words)
            if rng.random() < 0.2:
                line = nfd(line)
            out.append(line)
    # Arabic with harakat on every letter, Hebrew with niqqud, presentation forms
    arabic_letters = [chr(c) for c in range(0x0621, 0x064B) if unicodedata.category(chr(c)) == "Lo"]
    harakat = [chr(c) for c in range(0x064B, 0x0653)]
    hebrew_letters = [chr(c) for c in range(0x05D0, 0x05EB)]
    niqqud = [chr(c) for c in range(0x05B0, 0x05C8) if unicodedata.category(chr(c)) == "Mn"]
    for _ in range(80):
        w = " ".join("".join(rng.choice(arabic_letters) + "".join(rng.choice(harakat)
                                                                  for _ in range(rng.randint(0, 2)))
                             for _ in range(rng.randint(2, 7))) for _ in range(rng.randint(1, 8)))
        out.append(w)
    for _ in range(80):
        w = " ".join("".join(rng.choice(hebrew_letters) + "".join(rng.choice(niqqud)
                                                                  for _ in range(rng.randint(0, 2)))
                             for _ in range(rng.randint(2, 7))) for _ in range(rng.randint(1, 8)))
        out.append(w)
    for _ in range(60):
        out.append("".join(rand_from_ranges([(0xFB1D, 0xFB4F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFC)])
                           for _ in range(rng.randint(1, 15))))
    # standalone spacing-combining (Mc) marks after space / at line start
    mc = [c for lo, hi in [(0x0900, 0x0DFF), (0x0F00, 0x109F), (0x1780, 0x17FF), (0xA980, 0xA9DF),
                           (0x1B00, 0x1B7F), (0x11000, 0x1107F)]
          for c in chars_in(lo, hi, "Mc")]
    for _ in range(120):
        m = rng.choice(mc)
        out.append(rng.choice([m, " " + m, en_word() + " " + m + " " + en_word(), m + m + m,
                               "a" + m + "b", "1" + m, "." + m, "नमस्ते" + m, m + "नमस्ते"]))
    return out


# ---------------------------------------------------------------------------
# section 7: emoji
# ---------------------------------------------------------------------------

ZWJ = "\u200d"
VS16 = "\ufe0f"
VS15 = "\ufe0e"
EMOJI_ZWJ = [
    "👨\u200d👩\u200d👧\u200d👦", "👩\u200d💻", "👨\u200d🚀", "👩🏽\u200d🔬", "🧑\u200d🤝\u200d🧑",
    "🏳\ufe0f\u200d🌈", "🏴\u200d☠\ufe0f", "❤\ufe0f\u200d🔥", "👁\ufe0f\u200d🗨\ufe0f", "🐻\u200d❄\ufe0f",
    "😶\u200d🌫\ufe0f", "🧔\u200d♀\ufe0f", "👩\u200d❤\ufe0f\u200d💋\u200d👨", "🐈\u200d⬛",
    "🫱🏻\u200d🫲🏿", "🏃\u200d➡\ufe0f", "👩🏿\u200d🦰", "👨\u200d👨\u200d👧", "🧑🏾\u200d🍳",
    "👮\u200d♀\ufe0f", "🏊🏼\u200d♂\ufe0f", "🐦\u200d🔥", "🍋\u200d🟩", "⛓\ufe0f\u200d💥",
    "👩\u200d👩\u200d👦\u200d👦", "🧑\u200d🧑\u200d🧒", "\u200d👩", "👩\u200d", "👩\u200d\u200d💻",
]
FLAGS = ["FR", "US", "JP", "DE", "GB", "CN", "IN", "BR", "UA", "ZA", "KR", "EU", "UN", "XK", "AQ",
         "ZZ", "QQ", "AA"]
TAG_SEQS = ["gbeng", "gbsct", "gbwls", "ustx", "usca"]
NEW_EMOJI = [0x1F971, 0x1F90F, 0x1F9BE, 0x1FAE0, 0x1FABF, 0x1FA75, 0x1FAE8, 0x1F6DC, 0x1FA89,
             0x1FAE9, 0x1F7E0, 0x1F7EB, 0x1FA70, 0x1F978, 0x1FAC3, 0x1FAF8, 0x1F6DD, 0x1F9CB,
             0x1FA7B, 0x1FAAD, 0x1FAEF, 0x1FADF, 0x1FA8F, 0x1FABE, 0x1FAC6]
EMOJI_RANGES = [(0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F700, 0x1F77F),
                (0x1F780, 0x1F7FF), (0x1F800, 0x1F8FF), (0x1F900, 0x1F9FF), (0x1FA00, 0x1FA6F),
                (0x1FA70, 0x1FAFF)]
EMOJI_MISC = [(0x2600, 0x26FF), (0x2700, 0x27BF), (0x1F000, 0x1F02F), (0x1F0A0, 0x1F0FF),
              (0x1F100, 0x1F1FF), (0x1F200, 0x1F2FF), (0x2B00, 0x2BFF), (0x2190, 0x21FF)]
SKIN_BASES = ["👋", "👍", "✌", "🤞", "🙏", "💪", "👶", "🧑", "👩", "👨", "🤏", "🫶", "☝", "🤌", "🫰"]


def flag(cc):
    return "".join(chr(0x1F1E6 + ord(c) - ord("A")) for c in cc)


def one_emoji():
    k = rng.randrange(10)
    if k < 3:
        return rand_from_ranges(EMOJI_RANGES)
    if k == 3:
        return rng.choice(EMOJI_ZWJ)
    if k == 4:
        return rng.choice(SKIN_BASES) + chr(rng.randint(0x1F3FB, 0x1F3FF))
    if k == 5:
        return flag(rng.choice(FLAGS)) if rng.random() < 0.7 else \
            "".join(chr(rng.randint(0x1F1E6, 0x1F1FF)) for _ in range(rng.randint(1, 3)))
    if k == 6:
        return rng.choice("0123456789#*") + rng.choice([VS16 + "\u20e3", "\u20e3"])
    if k == 7:
        return rand_from_ranges(EMOJI_MISC) + rng.choice(["", VS15, VS16])
    if k == 8:
        return chr(rng.choice(NEW_EMOJI))
    return "🏴" + "".join(chr(0xE0000 + ord(c)) for c in rng.choice(TAG_SEQS)) + "\U000E007F"


def section_emoji():
    out = []
    for cp in NEW_EMOJI:
        out.append(chr(cp))
        out.append("hello" + chr(cp) + "world")
    for s in EMOJI_ZWJ:
        out.append(s)
        out.append(en_word() + s + en_word())
    for cc in FLAGS:
        out.append(flag(cc) + " " + cc)
    for k in "0123456789#*":
        out.append(k + VS16 + "\u20e3")
        out.append("x" + k + VS16 + "\u20e3" + "y " + k + "\u20e3")
    for t in TAG_SEQS:
        out.append("🏴" + "".join(chr(0xE0000 + ord(c)) for c in t) + "\U000E007F")
    out.extend(["hello🤏world", "hello🥱", "🦾arm", "🫠🫠🫠", "🪿goose", "1\ufe0f\u20e3", "🇫🇷",
                "☺\ufe0e ☺\ufe0f ❤\ufe0f ♥\ufe0e ©\ufe0f ®\ufe0e 1\ufe0f a\ufe0f", "🏻", "a🏻", "🏻🏼🏽🏾🏿",
                ":) :-( ;-) <3 :D xD ^_^ ¯\\_(ツ)_/¯ (╯°□°)╯︵ ┻━┻", "\U000E0067\U000E0062", "🏴\U000E007F"])
    for _ in range(320):
        out.append("".join(one_emoji() for _ in range(rng.randint(1, 3))))
    for _ in range(480):
        parts = []
        for _ in range(rng.randint(1, 10)):
            r = rng.random()
            if r < 0.4:
                parts.append(en_word())
            elif r < 0.6:
                parts.append(en_word() + one_emoji() + en_word())
            else:
                parts.append(one_emoji())
        out.append(rng.choice([" ", " ", ""]).join(parts))
    return out


# ---------------------------------------------------------------------------
# section 8: control and format characters
# ---------------------------------------------------------------------------

def special_chars():
    cs = [chr(c) for c in range(0x01, 0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)]
    cs += ["\u00ad", "\u200b", "\u200c", "\u200d", "\u200e", "\u200f"]
    cs += [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2060, 0x2065)]
    cs += [chr(c) for c in range(0x2066, 0x2070)]
    cs += ["\ufeff", "\ufffd", "\ufffc", "\ufff9", "\ufffa", "\ufffb", "\u180e", "\u061c",
           "\U000110BD", "\U000110CD", "\U0001BCA0", "\U0001BCA1", "\U0001BCA2", "\U0001BCA3",
           "\u034f", "\u115f", "\u1160", "\u3164", "\uffa0", "\u17b4", "\u17b5", "\u180b", "\u180f",
           "\U0001D173", "\U0001D17A", "\u0600", "\u0605", "\u06dd", "\u070f", "\u08e2", "\u0890",
           "\U00013430", "\U00013438", "\U0001343F", "\u2800", "\ufe00", "\U000E0100", "\U000E01EF"]
    cs += ["\U000E0001"] + [chr(c) for c in range(0xE0020, 0xE0080)]
    cs += ["\ue000", "\uf8ff", "\ue123", "\U000F0000", "\U000FFFFD", "\U00100000", "\U0010FFFD"]
    cs += [chr(c) for c in range(0xFDD0, 0xFDF0, 3)]
    cs += [chr((p << 16) | 0xFFFE) for p in range(17)] + [chr((p << 16) | 0xFFFF) for p in (0, 1, 2, 14, 16)]
    cs += ["\u0378", "\u0379", "\u0380", "\u0e3b", "\u0590", "\u1c8f",
           "\U00050000", "\U000E0080", "\U000E0000", "\U0002FFFD", "\U0003FFFD", "\U00040000",
           "\U000DFFFD", "\u2065", "\U0001F8FF", "\U0001FFFD", "\u0AF0", "\uFFF0", "\uFFF8"]
    return cs


def section_control():
    out = []
    for c in special_chars():
        a, b = en_word(), en_word()
        out.append(a + c + b)
        out.append(rng.choice([a + " " + c + " " + b, c, c * rng.randint(2, 6) + rng.choice(["", "x", " y", "é"])]))
        out.append(rng.choice(["caf" + c + "é", "ΟΔΟ" + c + "Σ", "中" + c + "文", c + "[SEP]" + c,
                               "e" + c + "\u0301", "1" + c + "2", "!" + c + "?", "👩" + c + "💻"]))
    for _ in range(120):
        cs = special_chars()
        words = []
        for _ in range(rng.randint(1, 10)):
            w = en_word()
            if rng.random() < 0.5:
                i = rng.randint(0, len(w))
                w = w[:i] + "".join(rng.choice(cs) for _ in range(rng.randint(1, 3))) + w[i:]
            words.append(w)
        out.append(rng.choice([" ", "", rng.choice(cs)]).join(words))
    for _ in range(40):
        out.append("".join(rand_cp(0xE000, 0xF8FF) if rng.random() < 0.5 else rand_cp(0xF0000, 0x10FFFD)
                           for _ in range(rng.randint(1, 10))))
    return out


# ---------------------------------------------------------------------------
# section 9: whitespace
# ---------------------------------------------------------------------------

WHITESPACE = ["\t", "\n", "\x0b", "\x0c", "\r", " ", "\x85", "\xa0", "\u1680"] + \
    [chr(c) for c in range(0x2000, 0x200B)] + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
                                              "\x1c", "\x1d", "\x1e", "\x1f"]
NEAR_WS = ["\u200b", "\u180e", "\ufeff", "\u2060", "\u2800", "\u3164", "\u115f", "\r\n"]


def ws_run(lo=1, hi=4):
    return "".join(rng.choice(WHITESPACE) for _ in range(rng.randint(lo, hi)))


def section_whitespace():
    out = []
    for w in WHITESPACE + NEAR_WS:
        out.append("hello" + w + "world")
        out.append(w + "hello" + w)
        out.append(w)
        out.append(w * 3 + en_word() + " " + en_word() + w * 2)
        out.append("a" + w + "." + w + "中" + w + "é" + w + "1")
    out.extend(["", " ", "  ", "\t", "\n", "\r\n", " \t \n ", "\u3000\u3000", "\xa0"])
    for _ in range(200):
        out.append(ws_run(0, 3) + ws_run(1, 2).join(en_word() for _ in range(rng.randint(1, 10))) + ws_run(0, 3))
    for _ in range(80):
        out.append(ws_run(1, 10))
    for _ in range(80):
        toks = []
        for _ in range(rng.randint(2, 10)):
            toks.append(rng.choice([en_word(), rng.choice(ASCII_PUNCT), rng.choice(NEAR_WS), "中", "é",
                                    "e\u0301", "[SEP]"]))
        out.append("".join(t + (ws_run(1, 3) if rng.random() < 0.7 else "") for t in toks))
    return out


# ---------------------------------------------------------------------------
# section 10: fullwidth, halfwidth, math alphanumerics, letterlike, ligatures...
# ---------------------------------------------------------------------------

MATH_STYLES_UPPER = [0x1D400, 0x1D468, 0x1D5A0, 0x1D5D4, 0x1D608, 0x1D63C, 0x1D670, 0x1D56C, 0x1D4D0]
MATH_DIGITS = [0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6]


def fullwidth(s):
    return "".join(chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else ("\u3000" if c == " " else c) for c in s)


def math_style(s, base):
    d = rng.choice(MATH_DIGITS)
    out = []
    for c in s:
        if "A" <= c <= "Z":
            out.append(chr(base + ord(c) - 65))
        elif "a" <= c <= "z":
            out.append(chr(base + 26 + ord(c) - 97))
        elif "0" <= c <= "9":
            out.append(chr(d + ord(c) - 48))
        else:
            out.append(c)
    return "".join(out)


COMPAT_RANGES = [(0xFF01, 0xFF5E), (0xFF61, 0xFF9F), (0xFFA0, 0xFFDC), (0xFFE0, 0xFFEE),
                 (0x1D400, 0x1D7FF), (0x2100, 0x214F), (0xFB00, 0xFB06), (0xFB13, 0xFB17),
                 (0x2160, 0x2188), (0x2460, 0x24FF), (0x2070, 0x209F), (0x00B2, 0x00B3), (0x00B9, 0x00BA),
                 (0x02B0, 0x02FF), (0x1D2C, 0x1D6A), (0x3280, 0x32B0), (0x1F100, 0x1F1AD), (0x2150, 0x215F),
                 (0x2776, 0x2793), (0x3251, 0x325F), (0xFE10, 0xFE19), (0xFE30, 0xFE6B), (0x1E030, 0x1E06D)]
LIGATURE_WORDS = ["ﬁnance", "ﬂower", "oﬀice", "eﬃcient", "waﬄe", "ﬀ", "ﬁ", "ﬂ", "ﬃ", "ﬄ", "ﬅ", "ﬆ",
                  "ﬆop", "Ⅻ", "ⅻ", "Ⅷ century", "ⅰⅱⅲⅳ", "ↀↁↂↈ", "①②③", "⑴⑵", "⒈⒉", "ⓐⓑⓒ", "ⒶⒷⒸ",
                  "x²+y²=z²", "H₂O", "CO₂", "E=mc²", "10⁻³", "aⁿ", "ₐₑₒ", "№ 5", "℡", "™", "℃", "℉",
                  "ℌℍℎℏ", "ℓ", "℘", "ℜ", "ℵ", "⅓ ⅔ ¼ ½ ¾ ⅞", "㎏ ㎞ ㎡ ㏄", "㍱", "ｶﾀｶﾅ", "ﾊﾟﾋﾟﾌﾟ", "ﾞﾟ",
                  "ＨＥＬＬＯ，ｗｏｒｌｄ！", "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ", "１２３４５", "￥１００", "￡＄￠",
                  "𝐇𝐞𝐥𝐥𝐨", "𝕳𝖊𝖑𝖑𝖔", "𝓗𝓮𝓵𝓵𝓸", "𝙷𝚎𝚕𝚕𝚘", "𝟏𝟐𝟑", "ℎ", "𝑥", "ℯ", "ℊ", "ℴ", "ﬓﬔﬕ"]


def section_compat():
    out = []
    for w in LIGATURE_WORDS:
        out.append(w)
        out.append(en_word() + " " + w + " " + en_word())
        out.append(w.upper() + w.lower())
    for _ in range(150):
        s = " ".join(maybe_case(en_word()) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.3:
            s += rng.choice([", ", "! ", "? ", ". "]) + str(rng.randint(0, 10 ** 6))
        out.append(fullwidth(s) if rng.random() < 0.7 else s[: len(s) // 2] + fullwidth(s[len(s) // 2:]))
    for _ in range(150):
        s = " ".join(maybe_case(en_word()) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.3:
            s += " " + str(rng.randint(0, 10 ** 6))
        out.append(math_style(s, rng.choice(MATH_STYLES_UPPER)))
    for _ in range(200):
        parts = []
        for _ in range(rng.randint(1, 8)):
            run = "".join(rand_from_ranges(COMPAT_RANGES) for _ in range(rng.randint(1, 6)))
            parts.append(rng.choice([run, en_word() + run, run + en_word()]))
        out.append(" ".join(parts))
    return out


# ---------------------------------------------------------------------------
# section 11: scripts / characters assigned after Unicode 8.0
# ---------------------------------------------------------------------------

NEW_SCRIPTS = [
    ("Adlam", 0x1E900, 0x1E95F), ("Osage", 0x104B0, 0x104FF), ("Newa", 0x11400, 0x1147F),
    ("Bhaiksuki", 0x11C00, 0x11C6F), ("Marchen", 0x11C70, 0x11CBF), ("Tangut", 0x17000, 0x187F7),
    ("TangutComp", 0x18800, 0x18AFF), ("MasaramGondi", 0x11D00, 0x11D5F), ("Nushu", 0x1B170, 0x1B2FF),
    ("ZanabazarSquare", 0x11A00, 0x11A4F), ("Soyombo", 0x11A50, 0x11AAF), ("HanifiRohingya", 0x10D00, 0x10D3F),
    ("Sogdian", 0x10F30, 0x10F6F), ("OldSogdian", 0x10F00, 0x10F2F), ("Dogra", 0x11800, 0x1184F),
    ("GunjalaGondi", 0x11D60, 0x11DAF), ("Makasar", 0x11EE0, 0x11EFF), ("Medefaidrin", 0x16E40, 0x16E9F),
    ("Elymaic", 0x10FE0, 0x10FFF), ("Nandinagari", 0x119A0, 0x119FF), ("Wancho", 0x1E2C0, 0x1E2FF),
    ("NyiakengPuachueHmong", 0x1E100, 0x1E14F), ("Yezidi", 0x10E80, 0x10EBF), ("Chorasmian", 0x10FB0, 0x10FDF),
    ("DivesAkuru", 0x11900, 0x1195F), ("Khitan", 0x18B00, 0x18CFF), ("Vithkuqi", 0x10570, 0x105BF),
    ("Toto", 0x1E290, 0x1E2BF), ("Tangsa", 0x16A70, 0x16ACF), ("CyproMinoan", 0x12F90, 0x12FFF),
    ("OldUyghur", 0x10F70, 0x10FAF), ("Kawi", 0x11F00, 0x11F5F), ("NagMundari", 0x1E4D0, 0x1E4FF),
    ("Garay", 0x10D40, 0x10D8F), ("Sunuwar", 0x11BC0, 0x11BFF), ("Todhri", 0x105C0, 0x105FF),
    ("GurungKhema", 0x16100, 0x1613F), ("KiratRai", 0x16D40, 0x16D7F), ("OlOnal", 0x1E5D0, 0x1E5FF),
    ("TuluTigalari", 0x11380, 0x113FF), ("Ahom", 0x11700, 0x1174F), ("Multani", 0x11280, 0x112AF),
    ("GeorgianMtavruli", 0x1C90, 0x1CBF), ("CyrillicExtC", 0x1C80, 0x1C8F), ("CyrillicExtD", 0x1E030, 0x1E08F),
    ("LatinExtD", 0xA7B0, 0xA7FF), ("LatinExtF", 0x10780, 0x107BF), ("LatinExtG", 0x1DF00, 0x1DFFF),
    ("SyriacSup", 0x0860, 0x086F), ("ArabicExtB", 0x0870, 0x089F), ("ArabicExtC", 0x10EC0, 0x10EFF),
    ("DevanagariExtA", 0x11B00, 0x11B5F), ("KaktovikNumerals", 0x1D2C0, 0x1D2DF),
    ("EgyptianExtA", 0x13460, 0x143FF), ("LegacyComputingSup", 0x1CC00, 0x1CEBF), ("MyanmarExtC", 0x116D0, 0x116FF),
    ("Sidetic", 0x10940, 0x1095F), ("TolongSiki", 0x11DB0, 0x11DEF), ("BeriaErfe", 0x16EA0, 0x16EDF),
    ("TaiYo", 0x1E6C0, 0x1E6FF), ("Znamenny", 0x1CF00, 0x1CFCF), ("EthiopicExtB", 0x1E7E0, 0x1E7FF),
]
NEW_SPECIFIC = ([chr(c) for c in range(0x1E944, 0x1E94B)] + ["\U0001E95E", "\U0001E95F"] +
                [chr(c) for c in range(0x2E43, 0x2E5E)] + [chr(c) for c in range(0x08D4, 0x08E3)] +
                [chr(c) for c in range(0x1ABF, 0x1ACF)] + ["\u1DFA", "\u166D", "\U000111C9", "\u1734",
                                                            "\u0C80", "\u0D00", "\u0AF9", "\u1CFA", "\u0CF3",
                                                            "\u0EBA", "\u0ECE", "\u0C5D", "\u0C3C", "\u17DD",
                                                            "\U00011070", "\U00011F41", "\u2E5D", "\u2FFC",
                                                            "\u31E4", "\U0001F6DC", "\u20C0", "\u20C1", "\uA7CB",
                                                            "\uA7DC", "\uA7CC", "\u0897", "\u10FD", "\u1C89",
                                                            "\u1C8A"])


def section_newscripts():
    out = []
    for name, lo, hi in NEW_SCRIPTS:
        out.append(chr(lo) + chr(hi) + " x" + chr(lo + 1) + "y")
        for _ in range(15):
            words = []
            for _ in range(rng.randint(1, 8)):
                w = "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))
                r = rng.random()
                if r < 0.2:
                    w = en_word() + w
                elif r < 0.3:
                    w = w + rng.choice(ASCII_PUNCT) + w.lower()
                elif r < 0.4:
                    w = w.upper() + w.lower()
                words.append(w)
            out.append(" ".join(words))
    adlam_letters = [chr(c) for c in range(0x1E900, 0x1E944)]
    for _ in range(60):
        out.append(" ".join("".join(rng.choice(adlam_letters) + ("".join(chr(rng.randint(0x1E944, 0x1E94A))
                                                                        for _ in range(rng.randint(0, 2))))
                                    for _ in range(rng.randint(1, 6))) +
                            rng.choice(["", "\U0001E95E", "\U0001E95F", "."])
                            for _ in range(rng.randint(1, 6))))
    arabic = [chr(c) for c in range(0x0628, 0x063B)]
    for c in NEW_SPECIFIC:
        base = rng.choice(arabic) if 0x08D4 <= ord(c) <= 0x08E2 else rng.choice(ASCII_LOWER)
        out.append(rng.choice([c, en_word() + c + en_word(), base + c + base, en_word() + " " + c + " " + en_word()]))
    return out


# ---------------------------------------------------------------------------
# section 12: long words
# ---------------------------------------------------------------------------

CYR_LETTERS = [chr(c) for c in range(0x0430, 0x0450)] + [chr(c) for c in range(0x0410, 0x0430)]
GREEK_LETTERS = [chr(c) for c in range(0x03B1, 0x03CA)] + [chr(c) for c in range(0x0391, 0x03AA) if c != 0x03A2]


def word_of(alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def section_long():
    out = []
    for n in (99, 100, 101, 150):
        for _ in range(6):
            w = word_of(ASCII_LETTERS, n)
            out.append(w)
            out.append(en_word() + " " + w + " " + en_word())
        out.append("a" * n)
        out.append("A" * n + "!")
    for n in list(range(95, 106)) + [200]:
        out.append(word_of(ASCII_LOWER, n))
        out.append(word_of(ASCII_LOWER + "0123456789", n))
    for n in (99, 100, 101, 102):
        for alpha in (CYR_LETTERS, GREEK_LETTERS, [c for c in LATIN_ACCENTED if len(nfd(c)) > 1]):
            w = word_of(alpha, n)
            out.append(w)
            out.append(nfd(w))
            out.append(en_word() + " " + w + " " + en_word())
    for k in list(range(45, 56)) + [60, 80, 100, 101]:
        out.append(nfd("é" * k))
        out.append("é" * k)
        out.append("İ" * k)
        out.append("e\u0301" * k + " " + en_word())
        out.append("ß" * k)
        out.append("ﬁ" * k)
        out.append("\u0130a" * k)
        out.append("ΟΣ" * k)
    for k in (49, 50, 51, 99, 100, 101):
        out.append("a" * 50 + "\x01" * (k - 50 if k > 50 else 1) + "a" * 50)
        out.append("a" * k + "\u200b" + "a" * (101 - k if k < 101 else 1))
        out.append("a" * k + "\u00ad" * 3 + "b")
        out.append("a" * k + "." + "b" * k)
        out.append("a" * k + "中" + "b" * k)
        out.append("a" * k + "\u0301" * 5)
        out.append("x" * k + "😀" + "y" * k)
        out.append(("ab" * k)[:k] + "\U0002B820" + "cd")
    for k in (33, 34, 50, 51):
        out.append("中" * 1 + "a" * 99 + "é" * k)
        out.append("𝐀" * (k * 2))
        out.append("\U0002B820" * (k * 2))
        out.append("\U000104D8" * (k * 2))
    # very long words and long runs without whitespace
    for n in (1000, 1500, 2048, 3000, 5000):
        out.append(word_of(ASCII_LOWER, n))
    out.append("".join(en_word() for _ in range(600)))
    out.append(word_of(ASCII_LETTERS + "0123456789+/", 4000) + "==")
    out.append("!" * 1000)
    out.append("中" * 2000)
    out.append("é" * 1200)
    out.append(nfd("é" * 1200))
    out.append("https://example.com/" + "/".join(ascii_word() for _ in range(400)))
    out.append("".join(rng.choice(CYR_LETTERS) for _ in range(3000)))
    out.append("a" + "\u0301" * 2000)
    out.append(" ".join(word_of(ASCII_LOWER, rng.randint(90, 110)) for _ in range(40)))
    for _ in range(60):
        n = rng.randint(90, 130)
        alpha = rng.choice([ASCII_LETTERS, CYR_LETTERS, GREEK_LETTERS, LATIN_ACCENTED, ASCII_LOWER + "0123456789"])
        out.append(word_of(alpha, n))
    return out


# ---------------------------------------------------------------------------
# section 13: punctuation, symbols, URLs, code, numbers
# ---------------------------------------------------------------------------

UNI_PUNCT = [c for c in (chr(x) for x in range(0xA0, 0x20000)) if unicodedata.category(c).startswith("P")]
UNI_SYMBOL = [c for c in (chr(x) for x in range(0xA0, 0x20000))
              if not is_surrogate(ord(c)) and unicodedata.category(c).startswith("S")]
COMMON_PUNCT = list("‐‑‒–—―‘’‚‛“”„‟«»¿¡·‰†‡•…‹›【】「」『』・〜¶§¦¨¯´¸©®™°±×÷€£¥₹₽₩₪₫₺₿¢¤→←↑↓↔⇒⇔∀∃∑∏√∞≠≤≥≈∈∉∩∪⊂⊃♥♦♣♠★☆✓✗✔✘")
CODE_SNIPPETS = [
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "def f(x): return x**2 if x > 0 else -x",
    "SELECT * FROM t WHERE a <> 'b' AND c >= 10;",
    "#include <stdio.h>",
    "const g = (x) => x.map(y => y * 2).filter(Boolean);",
    "printf(\"%d\\n\", x);",
    "r\"^\\s+(\\d{3})-\\w*$\"",
    "{\"key\": [1, 2.5e-3, null, true], \"k2\": {\"a\": \"b\"}}",
    "<div class=\"a\">&amp;&nbsp;&#x1F600;&lt;/div&gt;</div>",
    "\\frac{a}{b} + \\alpha_{i,j}^{2} \\cdot \\sum_{k=1}^{n}",
    "C:\\Program Files\\App\\bin\\app.exe",
    "/usr/local/lib/python3.11/site-packages/",
    "~/.bashrc && echo $HOME | grep -E '^/h' > /dev/null 2>&1",
    "std::vector<std::string> v{\"a\", \"b\"};",
    "a->b->c; x ?: y; p && *p; i++ + ++i;",
    "if [[ -z \"$VAR\" ]]; then exit 1; fi",
    "git commit -m 'fix: handle \\r\\n'",
    "\\\\server\\share\\file.txt", "\\N", "\\.", "\\", "\\\\", "a\\tb", "x\\ny",
    "#!/usr/bin/env python3", "--option=value -v -xzf", "key1=val1&key2=val%20two",
    "__init__", "__main__", "snake_case_name", "camelCaseName", "kebab-case-name", "SCREAMING_CASE",
]


def rand_url():
    scheme = rng.choice(["http", "https", "ftp", "file", "mailto", "ws"])
    host = ".".join(ascii_word(2, 8) for _ in range(rng.randint(1, 3))) + rng.choice([".com", ".org", ".de", ".co.uk", ".рф", ".中国", ".io"])
    path = "/".join(rng.choice([ascii_word(), en_word(), str(rng.randint(0, 9999)), "caf%C3%A9", "~user", "a.b"])
                    for _ in range(rng.randint(0, 5)))
    q = ""
    if rng.random() < 0.5:
        q = "?" + "&".join(ascii_word(1, 5) + "=" + rng.choice([ascii_word(), str(rng.randint(0, 10 ** 6))])
                           for _ in range(rng.randint(1, 4)))
    frag = "#" + ascii_word() if rng.random() < 0.2 else ""
    port = ":" + str(rng.randint(1, 65535)) if rng.random() < 0.2 else ""
    return "%s://%s%s/%s%s%s" % (scheme, host, port, path, q, frag)


def rand_email():
    return rng.choice([ascii_word() + "." + ascii_word(), ascii_word() + "+" + ascii_word(), "пример", "用户",
                       ascii_word() + "_" + str(rng.randint(1, 99))]) + "@" + \
        rng.choice([ascii_word() + ".com", "example.co.uk", "пример.рф", "例え.jp", ascii_word() + ".org"])


def rand_number():
    n = rng.randint(0, 10 ** rng.randint(1, 12))
    k = rng.randrange(12)
    if k == 0:
        return "{:,}".format(n)
    if k == 1:
        return "{:,}".format(n).replace(",", ".") + "," + str(rng.randint(0, 99)).zfill(2)
    if k == 2:
        return "{:,}".format(n).replace(",", " ")
    if k == 3:
        return "{:,}".format(n).replace(",", "\u202f")
    if k == 4:
        return "{:,}".format(n).replace(",", "'")
    if k == 5:
        return "%.*f" % (rng.randint(1, 6), rng.random() * 10 ** rng.randint(0, 8))
    if k == 6:
        return "%.3e" % (rng.random() * 10 ** rng.randint(-20, 20))
    if k == 7:
        return "".join(chr(0x0660 + int(d)) for d in str(n))
    if k == 8:
        return "".join(chr(0x0966 + int(d)) for d in str(n))
    if k == 9:
        return rng.choice(["$", "€", "£", "¥", "₹", "-", "+", "±", "~"]) + str(n) + rng.choice(["", "%", "‰", "°C", "km²", "€"])
    if k == 10:
        return "0x%X" % n
    return "%d.%d.%d.%d" % tuple(rng.randint(0, 255) for _ in range(4))


def section_punct():
    out = []
    out.extend(["!!!???", "...", "$+<=>^`|~", "?!", "!?!?!?", "---", "___", "***", "'''", '"""', "(((", ")))",
                "<<<>>>", "@@@", "###", "%%%", "&&&", "///", "\\\\\\", ";;;", ":::", ",,,", "...,,,;;;",
                "¿¡", "¡¿Qué?!", "«»", "“”", "‘’", "—–‐", "…", "‰", "†‡", "【】", "「」", "・", "©®™",
                "°±×÷", "€£¥₹", "→∀∑≠♥★", ASCII_PUNCT, "".join(COMMON_PUNCT)])
    for c in CODE_SNIPPETS:
        out.append(c)
    for _ in range(160):
        k = rng.randrange(4)
        if k == 0:
            out.append("".join(rng.choice(ASCII_PUNCT) for _ in range(rng.randint(1, 30))))
        elif k == 1:
            out.append("".join(rng.choice(UNI_PUNCT) for _ in range(rng.randint(1, 15))))
        elif k == 2:
            out.append("".join(rng.choice(UNI_SYMBOL) for _ in range(rng.randint(1, 15))))
        else:
            out.append("".join(rng.choice(COMMON_PUNCT) for _ in range(rng.randint(1, 15))))
    for _ in range(450):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.randrange(12)
            if r == 0:
                parts.append(rand_url())
            elif r == 1:
                parts.append(rand_email())
            elif r == 2:
                parts.append(rand_number())
            elif r == 3:
                parts.append("#" + rng.choice([en_word().capitalize() + en_word().capitalize(), "日本", "café", "ÜberTag", "2024"]))
            elif r == 4:
                parts.append("@" + rng.choice([ascii_word() + "_" + ascii_word(), "Юля", "user123", "中文名"]))
            elif r == 5:
                parts.append(rng.choice(CODE_SNIPPETS))
            elif r == 6:
                w = en_word()
                parts.append(rng.choice(["“" + w + "”", "«" + w + "»", "„" + w + "“", "'" + w + "'", "(" + w + ")",
                                         "[" + w + "]", "{" + w + "}", "¿" + w + "?", "¡" + w + "!", w + "…",
                                         w + "—" + en_word(), w + "’s", w + "n't", w + "'ll", "-" + w + "-"]))
            elif r == 7:
                parts.append(rng.choice(UNI_PUNCT) + en_word() + rng.choice(UNI_PUNCT))
            elif r == 8:
                parts.append(en_word() + rng.choice(UNI_SYMBOL) + en_word())
            elif r == 9:
                parts.append(rng.choice(["2024-01-15T10:30:00Z", "12:30pm", "+1 (555) 123-4567", "::1",
                                         "fe80::1%eth0", "v1.2.3-beta+build.5", "3.5km²", "25°C", "±0.5",
                                         "½", "¾", "1/2", "50%", "A/B", "e.g.", "i.e.", "U.S.A.", "Ph.D.",
                                         "a.m.", "No.1", "#1", "1st", "2nd", "3rd", "4th", "24/7", "9-5",
                                         "30-40%", "$1.5M", "€2,50", "10^6", "2^32-1", "O(n log n)"]))
            else:
                parts.append(en_word())
        out.append(" ".join(parts))
    return out


# ---------------------------------------------------------------------------
# section 14: special tokens in text
# ---------------------------------------------------------------------------

def section_special():
    toks = ["[SEP]", "[CLS]", "[UNK]", "[MASK]", "[PAD]"]
    out = []
    for t in toks:
        low = t.lower()
        out.extend([t, "a" + t + "b", t + t, "x" + t, t + "x", low, t[:-1], t[1:], "[ " + t[1:-1] + " ]",
                    "[" + t + "]", t + " " + t, " " + t + " ", "Hello " + t + " world", t.capitalize(),
                    "(" + t + ")", t + ".", "中" + t + "中", t + "\u0301", "\u00ad" + t, t[0] + "\u200b" + t[1:],
                    fullwidth(t), t.replace("[", "［").replace("]", "］"), t[1:-1], "##" + t[1:-1].lower()])
    out.extend(["[SEP][SEP]", "[CLS] a [SEP] b [SEP]", "[CLS][SEP][PAD][MASK][UNK]", "[[SEP]]", "[SEP", "SEP]",
                "[ SEP ]", "[sep]", "[Sep]", "[S E P]", "[SEP]]", "[[SEP]", "[]", "[", "]", "[[", "]]",
                "[unused0]", "[unused1]", "##", "##s", "##ing", "a ##b", "[MASK]ed", "un[MASK]able",
                "<s>", "</s>", "<unk>", "<pad>", "<mask>", "<|endoftext|>", "[SEP]\n[CLS]", "[SEP]\t[SEP]"])
    for _ in range(60):
        parts = []
        for _ in range(rng.randint(2, 10)):
            parts.append(rng.choice(toks + [en_word(), en_word(), rng.choice(toks).lower(), "[", "]", "#"]))
        out.append(rng.choice([" ", ""]).join(parts))
    return out


# ---------------------------------------------------------------------------
# section 15: Hugging Face BERT tokenizer unit-test strings
# ---------------------------------------------------------------------------

def section_hf():
    return ["UNwant\u00E9d,running", " \tHeLLo!how  \n Are yoU?  ", "H\u00E9llo", "ah\u535A\u63A8zz",
            "  \tHäLLo!how  \n Are yoU?  ", "Hello [SEP] world", "unwanted running", "unwantedX running",
            "", " ", "\t\n"]


# ---------------------------------------------------------------------------
# section 16: random soup
# ---------------------------------------------------------------------------

def soup_pools():
    return [
        ("cjk", [(lo, hi) for _, lo, hi in CJK_RANGES] + [CJK_TYPO] + KANA_RANGES + HANGUL_RANGES + JAMO_RANGES + CJK_PUNCT),
        ("marks", MARK_RANGES),
        ("latin", [(0xC0, 0x24F), (0x1E00, 0x1EFF), (0x370, 0x3FF), (0x400, 0x52F)]),
        ("complex", [(lo, hi) for _, lo, hi in COMPLEX_SCRIPTS]),
        ("emoji", EMOJI_RANGES + EMOJI_MISC + [(0x1F3FB, 0x1F3FF), (0x1F1E6, 0x1F1FF), (0xFE0E, 0xFE0F), (0x200D, 0x200D), (0x20E3, 0x20E3)]),
        ("control", [(0x01, 0x1F), (0x7F, 0x9F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F),
                     (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFD), (0xE0000, 0xE007F), (0xE000, 0xF8FF), (0xFDD0, 0xFDEF)]),
        ("ws", [(ord(c), ord(c)) for c in WHITESPACE]),
        ("compat", COMPAT_RANGES),
        ("new", [(lo, hi) for _, lo, hi in NEW_SCRIPTS]),
        ("punct", [(0x2010, 0x205E), (0x3000, 0x303F), (0xA1, 0xBF), (0x2190, 0x22FF)]),
    ]


def section_soup(word_pools):
    out = []
    pools = soup_pools()
    for _ in range(3000):
        n = rng.randint(1, 60)
        chars = []
        for _ in range(n):
            r = rng.random()
            if r < 0.3:
                chars.append(rng.choice(ASCII_PRINTABLE))
            elif r < 0.7:
                chars.append(rand_from_ranges(rng.choice(pools)[1]))
            else:
                chars.append(rand_cp(0x80, 0x10FFFF))
        out.append("".join(chars))
    seps = [" ", " ", " ", " ", "", "\t", "\xa0", "\n", ", ", "-", "\u3000", ".", "\u200b"]
    names = sorted(word_pools)
    for _ in range(1000):
        parts = []
        for _ in range(rng.randint(2, 25)):
            parts.append(rng.choice(word_pools[rng.choice(names)]))
            parts.append(rng.choice(seps))
        out.append("".join(parts[:-1]))
    return out


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def validate_text(t, where):
    if "\x00" in t:
        raise SystemExit("NUL in %s: %r" % (where, t[:80]))
    try:
        t.encode("utf-8")
    except UnicodeEncodeError:
        raise SystemExit("non-UTF-8 (surrogate?) in %s: %r" % (where, t[:80]))


def verify(path, texts):
    with open(path, "rb") as f:
        data = f.read()
    s = data.decode("utf-8")  # strict: raises on invalid UTF-8
    assert s.endswith("\n") and not s.endswith("\n\n"), "file must end with exactly one LF"
    lines = s[:-1].split("\n")
    assert len(lines) == len(texts), (len(lines), len(texts))
    assert len(lines) >= 20000, len(lines)
    assert "\r" not in s
    for i, (line, t) in enumerate(zip(lines, texts)):
        u = unescape(line)
        assert u == t, "round trip mismatch at line %d" % (i + 1)
        assert "\x00" not in u
        assert not any(is_surrogate(ord(c)) for c in u)
        u.encode("utf-8")
    assert lines[-1] != ""
    return len(data), hashlib.sha256(data).hexdigest()


def main():
    print("loading SpamAssassin data ...", file=sys.stderr)
    rows = load_spam()
    sections = []
    # section 2 first (it fills the English vocabulary used elsewhere); output order is 1..16
    english = section_english(rows)
    print("reading gettext catalogues ...", file=sys.stderr)
    sections.append(("01 gettext multilingual", section_gettext()))
    sections.append(("02 English e-mail", english))
    sections.append(("03 CJK", section_cjk()))
    sections.append(("04 accented Latin/Greek/Turkish/Cyrillic", section_accents()))
    sections.append(("05 combining marks", section_combining()))
    sections.append(("06 Indic/complex scripts", section_complex()))
    sections.append(("07 emoji", section_emoji()))
    sections.append(("08 control/format/PUA/unassigned", section_control()))
    sections.append(("09 whitespace", section_whitespace()))
    sections.append(("10 fullwidth/compat/math", section_compat()))
    sections.append(("11 post-Unicode-8 scripts", section_newscripts()))
    sections.append(("12 long words", section_long()))
    sections.append(("13 punctuation/symbols/URLs/code", section_punct()))
    sections.append(("14 special tokens", section_special()))
    sections.append(("15 HF BERT test strings", section_hf()))
    word_pools = {}
    for name, texts in sections[:13]:
        words = {}
        for t in texts:
            for w in t.split(" "):
                if w and len(w) <= 40:
                    words[w] = None
        word_pools[name] = list(words)
    sections.append(("16 random soup", section_soup(word_pools)))

    texts = []
    for name, sec in sections:
        for t in sec:
            validate_text(t, name)
        texts.extend(sec)
    assert texts[-1] != ""
    with open(OUT_PATH, "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(escape(t))
            f.write("\n")
    nbytes, digest = verify(OUT_PATH, texts)
    for name, sec in sections:
        print("%-45s %6d lines" % (name, len(sec)))
    print("%-45s %6d lines, %d bytes" % ("TOTAL", len(texts), nbytes))
    print("empty texts: %d" % sum(1 for t in texts if t == ""))
    print("sha256 %s  %s" % (digest, os.path.relpath(OUT_PATH, REPO)))


if __name__ == "__main__":
    main()
