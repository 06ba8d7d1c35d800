/// Hugging Face's `TemplateProcessing`: where the special tokens go around one sequence or a
/// pair, and the type id of every part (BERT: `[CLS] A [SEP]` and `[CLS] A [SEP] B:1 [SEP]:1`).
struct PostProcessor: Sendable, Equatable {
    enum Piece: Sendable, Equatable {
        /// The tokens of the first (`isFirst`) or second sequence.
        case sequence(isFirst: Bool, typeId: Int)
        /// A special token (possibly several ids) with its type id.
        case special(ids: [Int], tokens: [String], typeId: Int)
    }

    var single: [Piece]
    var pair: [Piece]

    /// No special tokens; the second sequence gets type id 1 (tokenizers without a post-processor).
    static let plain = PostProcessor(single: [.sequence(isFirst: true, typeId: 0)],
                                     pair: [.sequence(isFirst: true, typeId: 0), .sequence(isFirst: false, typeId: 1)])

    /// BERT's template: `[CLS] A [SEP]`, and `[CLS] A [SEP] B [SEP]` with B and its `[SEP]` of type 1.
    static func bert(cls: (token: String, id: Int), sep: (token: String, id: Int)) -> PostProcessor {
        let clsPiece = Piece.special(ids: [cls.id], tokens: [cls.token], typeId: 0)
        let sepPiece = Piece.special(ids: [sep.id], tokens: [sep.token], typeId: 0)
        return PostProcessor(
            single: [clsPiece, .sequence(isFirst: true, typeId: 0), sepPiece],
            pair: [clsPiece, .sequence(isFirst: true, typeId: 0), sepPiece,
                   .sequence(isFirst: false, typeId: 1), .special(ids: [sep.id], tokens: [sep.token], typeId: 1)])
    }

    /// The number of special tokens the template adds.
    func addedTokenCount(isPair: Bool) -> Int {
        (isPair ? pair : single).reduce(0) { count, piece in
            if case .special(let ids, _, _) = piece { count + ids.count } else { count }
        }
    }

    /// Every special token id the templates use.
    var specialIds: [Int] {
        (single + pair).flatMap { piece -> [Int] in
            if case .special(let ids, _, _) = piece { ids } else { [] }
        }
    }
}
