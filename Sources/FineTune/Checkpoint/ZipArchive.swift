import Foundation

/// The entries of a zip archive as `torch.save` writes it: stored (uncompressed) records,
/// with zip64 end records and extra fields when the archive or an entry is large.
///
/// Only the central directory is trusted for sizes (PyTorch sets the data-descriptor flag, so
/// local headers may carry zeros); each local header is checked to name the same entry.
/// Every offset and size is checked against the file before use, so a damaged or hostile
/// archive throws ``CheckpointError/unreadablePyTorchFile(reason:)``. Like PyTorch (which
/// may write zero CRCs), CRC-32 values are not checked.
struct ZipArchive: Sendable {
    /// One record: where its bytes are in the file.
    struct Entry: Equatable, Sendable {
        var name: String
        var dataRange: Range<Int>
    }

    /// The whole file, indexed from 0.
    let file: Data
    /// Entries in central-directory order.
    let entries: [Entry]
    private let index: [String: Int]

    private static let endOfCentralDirectory: UInt32 = 0x0605_4B50
    private static let zip64EndLocator: UInt32 = 0x0706_4B50
    private static let zip64End: UInt32 = 0x0606_4B50
    private static let centralHeader: UInt32 = 0x0201_4B50
    private static let localHeader: UInt32 = 0x0403_4B50

    /// Whether `file` starts like a zip archive (a local header, or an empty archive's end record).
    static func looksLikeZip(_ file: Data) -> Bool {
        guard file.count >= 4 else { return false }
        let magic = file.prefix(4).reduce(UInt32(0)) { $0 >> 8 | UInt32($1) << 24 }
        return magic == localHeader || magic == endOfCentralDirectory
    }

    init(_ data: Data) throws(CheckpointError) {
        let file = data.startIndex == 0 ? data : Data(data)
        let reader = ByteReader(file)
        // End of central directory: 22 bytes plus a comment of up to 65535 bytes at the end.
        guard file.count >= 22 else { throw Self.error("\(file.count) bytes is too short for a zip archive") }
        // (A plain backward scan: Foundation's Data.range(of:) costs time in proportion to the whole file.)
        let lowest = max(0, file.count - 22 - 65_535)
        let found = file.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int? in
            var position = file.count - 22
            while position >= lowest {
                if raw[position] == 0x50, UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: position, as: UInt32.self))
                    == Self.endOfCentralDirectory { return position }
                position -= 1
            }
            return nil
        }
        guard let eocd = found else { throw Self.error("no end-of-central-directory record (truncated?)") }
        var disk = UInt64(reader.u16(eocd + 4)), directoryDisk = UInt64(reader.u16(eocd + 6))
        var entriesOnDisk = UInt64(reader.u16(eocd + 8)), entryCount = UInt64(reader.u16(eocd + 10))
        var directorySize = UInt64(reader.u32(eocd + 12)), directoryOffset = UInt64(reader.u32(eocd + 16))
        var directoryEnd = eocd

        // A zip64 locator sits just before the end record; its record overrides the 16/32-bit fields.
        if eocd >= 20, reader.u32(eocd - 20) == Self.zip64EndLocator {
            let recordOffset = try Self.offset(reader.u64(eocd - 12), "the zip64 end record offset")
            guard recordOffset <= eocd - 20 - 56, reader.u32(recordOffset) == Self.zip64End else {
                throw Self.error("the zip64 locator points to no zip64 end record")
            }
            disk = UInt64(reader.u32(recordOffset + 16)); directoryDisk = UInt64(reader.u32(recordOffset + 20))
            entriesOnDisk = reader.u64(recordOffset + 24); entryCount = reader.u64(recordOffset + 32)
            directorySize = reader.u64(recordOffset + 40); directoryOffset = reader.u64(recordOffset + 48)
            directoryEnd = recordOffset
        } else if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            throw Self.error("the end record defers to a zip64 record that is missing")
        }
        guard disk == 0, directoryDisk == 0, entriesOnDisk == entryCount else {
            throw Self.error("multi-disk archives are not supported")
        }
        let start = try Self.offset(directoryOffset, "the central directory offset")
        let size = try Self.offset(directorySize, "the central directory size")
        guard start <= directoryEnd, size <= directoryEnd - start else {
            throw Self.error("the central directory (\(size) bytes at \(start)) lies outside the file")
        }
        // Each entry takes at least 46 bytes, which bounds the count before anything is allocated.
        guard entryCount <= UInt64(size / 46) else {
            throw Self.error("\(entryCount) entries cannot fit a \(size)-byte central directory")
        }

        var entries: [Entry] = []
        var index: [String: Int] = [:]
        var cursor = start
        let end = start + size
        for _ in 0..<Int(entryCount) {
            let entry = try Self.entry(at: &cursor, end: end, dataLimit: start, reader)
            guard index.updateValue(entries.count, forKey: entry.name) == nil else {
                throw Self.error("two entries are named \(entry.name)")
            }
            entries.append(entry)
        }
        self.file = file
        self.entries = entries
        self.index = index
    }

    /// The entry named `name`, if any.
    func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }

    /// The bytes of an entry.
    func contents(_ entry: Entry) -> Data { file.subdata(in: entry.dataRange) }

    // MARK: Parsing

    /// Parses the central-directory entry at `cursor` (advancing it) and checks its local header.
    private static func entry(at cursor: inout Int, end: Int, dataLimit: Int, _ reader: ByteReader) throws(CheckpointError) -> Entry {
        guard end - cursor >= 46, reader.u32(cursor) == centralHeader else {
            throw error("central directory entry at \(cursor) is damaged")
        }
        let flags = reader.u16(cursor + 8), method = reader.u16(cursor + 10)
        var compressedSize = UInt64(reader.u32(cursor + 20)), size = UInt64(reader.u32(cursor + 24))
        let nameLength = Int(reader.u16(cursor + 28)), extraLength = Int(reader.u16(cursor + 30))
        let commentLength = Int(reader.u16(cursor + 32))
        var localOffset = UInt64(reader.u32(cursor + 42))
        let nameStart = cursor + 46
        guard end - nameStart >= nameLength + extraLength + commentLength else {
            throw error("central directory entry at \(cursor) runs past the directory")
        }
        guard let name = String(validating: reader.bytes(nameStart..<nameStart + nameLength), as: UTF8.self) else {
            throw error("an entry name is not UTF-8")
        }
        // zip64 extended information: the 64-bit values of the fields set to 0xFFFFFFFF, in order.
        var extra = nameStart + nameLength
        let extraEnd = extra + extraLength
        while extraEnd - extra >= 4 {
            let id = reader.u16(extra), length = Int(reader.u16(extra + 2))
            guard extraEnd - extra - 4 >= length else { throw error("entry \(name) has a damaged extra field") }
            if id == 0x0001 {
                var field = extra + 4
                func next(_ value: inout UInt64) throws(CheckpointError) {
                    guard value == 0xFFFF_FFFF else { return }
                    guard extra + 4 + length - field >= 8 else { throw error("entry \(name) has a short zip64 field") }
                    value = reader.u64(field)
                    field += 8
                }
                try next(&size)
                try next(&compressedSize)
                try next(&localOffset)
            }
            extra += 4 + length
        }
        cursor = extraEnd + commentLength

        guard flags & 1 == 0 else { throw error("entry \(name) is encrypted") }
        guard method == 0, compressedSize == size else {
            throw error("entry \(name) is compressed (method \(method)); torch.save writes stored entries")
        }
        let local = try offset(localOffset, "entry \(name)'s offset")
        guard local <= dataLimit, dataLimit - local >= 30, reader.u32(local) == localHeader else {
            throw error("entry \(name) has no local header at \(local)")
        }
        let localNameLength = Int(reader.u16(local + 26)), localExtraLength = Int(reader.u16(local + 28))
        let dataStart = local + 30 + localNameLength + localExtraLength
        guard localNameLength == nameLength, dataStart <= dataLimit,
              reader.bytes(local + 30..<local + 30 + nameLength).elementsEqual(reader.bytes(nameStart..<nameStart + nameLength)) else {
            throw error("entry \(name)'s local header does not match the central directory")
        }
        let byteCount = try offset(size, "entry \(name)'s size")
        guard byteCount <= dataLimit - dataStart else {
            throw error("entry \(name) (\(byteCount) bytes at \(dataStart)) runs past its data (truncated?)")
        }
        return Entry(name: name, dataRange: dataStart..<dataStart + byteCount)
    }

    /// A 64-bit size or offset as an Int no larger than any file.
    private static func offset(_ value: UInt64, _ what: String) throws(CheckpointError) -> Int {
        guard value <= UInt64(Int.max / 2) else { throw error("\(what) \(value) is impossibly large") }
        return Int(value)
    }

    private static func error(_ reason: String) -> CheckpointError { .unreadablePyTorchFile(reason: "zip: \(reason)") }
}

/// Little-endian reads from a file; callers check ranges first.
struct ByteReader {
    let data: Data

    init(_ data: Data) { self.data = data }

    func u16(_ offset: Int) -> UInt16 { load(offset) }
    func u32(_ offset: Int) -> UInt32 { load(offset) }
    func u64(_ offset: Int) -> UInt64 { load(offset) }
    func bytes(_ range: Range<Int>) -> Data { data.subdata(in: range) }

    private func load<T: FixedWidthInteger>(_ offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= data.count, "ByteReader: read past the end")
        return data.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
