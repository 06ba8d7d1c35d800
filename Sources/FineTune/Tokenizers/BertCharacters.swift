import Foundation

/// The character classes of Hugging Face's BERT normaliser and pre-tokeniser, as the Rust
/// `tokenizers` library computes them.
///
/// `tokenizers` takes its general categories from the `unicode_categories` crate and its
/// canonical decompositions from `unicode-normalization-alignments`, both generated from
/// Unicode 8.0 data. A character assigned later (a new emoji, a new punctuation mark) has no
/// category there: it is neither removed as a control, nor split as punctuation, nor stripped
/// as an accent. So every class below asks Swift's (newer) Unicode data and then keeps only
/// characters that existed in Unicode 8.0. Lower-casing uses the Rust standard library's
/// current tables, as Swift's `lowercaseMapping` does. The test "every code point" checks each
/// class against what the `tokenizers` build reports for all 1,114,112 code points.
enum BertCharacters {
    /// Whether `scalar` was assigned in Unicode 8.0, the version of the crates' tables.
    @inline(__always)
    static func existedInTableVersion(_ scalar: Unicode.Scalar) -> Bool {
        guard let age = scalar.properties.age else { return false }
        return age.major < 8 || (age.major == 8 && age.minor == 0)
    }

    /// The general category a Unicode 8.0 character had in Unicode 8.0: seven have changed since.
    @inline(__always)
    static func category(_ scalar: Unicode.Scalar) -> Unicode.GeneralCategory {
        switch scalar.value {
        case 0x166D, 0x111C9: return .otherPunctuation        // now So (Unicode 12) and Mn (Unicode 13)
        case 0x1734, 0x1171E: return .nonspacingMark          // now Mc
        case 0x1885, 0x1886: return .otherLetter              // now Mn (Unicode 9)
        case 0xA9BD: return .spacingMark                      // now Mn
        default: return scalar.properties.generalCategory
        }
    }

    /// Whitespace (Rust's `char::is_whitespace`, the Unicode White_Space property).
    @inline(__always)
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x80 { return v == 32 || (9...13).contains(v) }
        return scalar.properties.isWhitespace
    }

    /// Removed by `clean_text`: general category Cc, Cf or Co, except tab, newline and return.
    @inline(__always)
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x80 { return (v < 32 && v != 9 && v != 10 && v != 13) || v == 127 }
        switch category(scalar) {
        case .control, .format, .privateUse: return existedInTableVersion(scalar)
        default: return false
        }
    }

    /// Split off as its own word: ASCII punctuation (symbols such as `$`, `+`, `^` included) or
    /// a Unicode punctuation category (Pc, Pd, Ps, Pe, Pi, Pf, Po).
    @inline(__always)
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v < 0x80 { return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) }
        switch category(scalar) {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return existedInTableVersion(scalar)
        default: return false
        }
    }

    /// Removed by `strip_accents` after the canonical decomposition (general category Mn).
    @inline(__always)
    static func isNonspacingMark(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value >= 0x300 && category(scalar) == .nonspacingMark
            && existedInTableVersion(scalar)
    }

    /// The CJK ideograph blocks BERT surrounds with spaces (not Hangul, not kana).
    @inline(__always)
    static func isChinese(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        return (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v)
            || (0x20000...0x2A6DF).contains(v) || (0x2A700...0x2B73F).contains(v)
            || (0x2B740...0x2B81F).contains(v) || (0x2B920...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    /// A word character of the Rust `regex` crate (`\w`): alphabetic, a mark, a decimal
    /// digit, a connector punctuation or a join control. Used by added tokens' `single_word`.
    static func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.value < 0x80 {
            let v = scalar.value
            return (0x30...0x39).contains(v) || (0x41...0x5A).contains(v) || (0x61...0x7A).contains(v) || v == 0x5F
        }
        let properties = scalar.properties
        if properties.isAlphabetic || scalar.value == 0x200C || scalar.value == 0x200D { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// The canonical combining class the decomposition crate knows (0 for newer characters).
    @inline(__always)
    static func combiningClass(_ scalar: Unicode.Scalar) -> UInt8 {
        if scalar.value < 0x300 { return 0 }
        let value = scalar.properties.canonicalCombiningClass.rawValue
        return value == 0 || !existedInTableVersion(scalar) ? 0 : value
    }

    /// Appends the full canonical decomposition of `scalar` (NFD without reordering) to `output`.
    @inline(__always)
    static func appendDecomposition(of scalar: Unicode.Scalar, to output: inout [Unicode.Scalar]) {
        let v = scalar.value
        if v < 0xC0 {
            output.append(scalar)
        } else if (0xAC00...0xD7A3).contains(v) {
            // Hangul syllables decompose arithmetically into two or three jamo.
            let index = v - 0xAC00
            output.append(Unicode.Scalar(0x1100 + index / 588)!)
            output.append(Unicode.Scalar(0x1161 + (index % 588) / 28)!)
            if index % 28 != 0 { output.append(Unicode.Scalar(0x11A7 + index % 28)!) }
        } else if let decomposition = canonicalDecompositions[v] {
            output.append(contentsOf: decomposition)
        } else {
            output.append(scalar)
        }
    }

    /// Every canonical decomposition of a Unicode 8.0 character (Hangul syllables aside),
    /// read once from Foundation. Decompositions of assigned characters never change, and in
    /// Unicode 8.0 they all lie in these blocks; the "every code point" test would name any
    /// character left out.
    private static let canonicalDecompositions: [UInt32: [Unicode.Scalar]] = {
        let blocks: [ClosedRange<UInt32>] = [
            0xC0...0x30FF, 0xF900...0xFB4F, 0x11000...0x115FF, 0x1D100...0x1D1FF, 0x2F800...0x2FA1F,
        ]
        var table: [UInt32: [Unicode.Scalar]] = [:]
        for block in blocks {
            for value in block {
                guard let scalar = Unicode.Scalar(value), existedInTableVersion(scalar),
                      !(0xAC00...0xD7A3).contains(value) else { continue }
                let decomposed = Array(String(Character(scalar)).decomposedStringWithCanonicalMapping.unicodeScalars)
                if decomposed != [scalar] { table[value] = decomposed }
            }
        }
        return table
    }()
}
