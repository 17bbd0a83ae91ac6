using System.Buffers.Binary;

namespace Vserver.Tests.Security;

/// <summary>
/// Runs a classic BPF seccomp program against one struct seccomp_data, for the instructions a seccomp filter needs.
/// Like the kernel's checker it refuses a program before running it when it is empty or longer than BPF_MAXINSNS, has an
/// unknown opcode, a jump that leaves the program, a load outside seccomp_data, or a last instruction that is not a return
/// (so execution cannot fall off the end).
/// </summary>
internal static class ClassicBpf
{
    public const uint AuditArchX86_64 = 0xC000003E;
    public const uint RetAllow = 0x7fff0000, RetErrno = 0x00050000;
    public const ushort LdAbsW = 0x20, JeqK = 0x15, JgtK = 0x25, JgeK = 0x35, JsetK = 0x45, RetK = 0x06;
    private const int MaxInstructions = 4096, InstructionSize = 8;

    /// <summary>struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6].</summary>
    private const int SeccompDataSize = 64;

    public readonly record struct Instruction(ushort Code, byte Jt, byte Jf, uint K);

    /// <summary>The program's instructions, after the checks above.</summary>
    public static Instruction[] Decode(byte[] program)
    {
        if (program.Length == 0 || program.Length % InstructionSize != 0 || program.Length / InstructionSize > MaxInstructions)
        {
            throw new ArgumentException($"a program of {program.Length} bytes is not 1-{MaxInstructions} instructions");
        }

        var code = new Instruction[program.Length / InstructionSize];
        for (int i = 0; i < code.Length; i++)
        {
            ReadOnlySpan<byte> bytes = program.AsSpan(i * InstructionSize, InstructionSize);
            code[i] = new Instruction(BinaryPrimitives.ReadUInt16LittleEndian(bytes), bytes[2], bytes[3],
                BinaryPrimitives.ReadUInt32LittleEndian(bytes[4..]));
        }

        for (int pc = 0; pc < code.Length; pc++)
        {
            Instruction insn = code[pc];
            switch (insn.Code)
            {
                case LdAbsW when insn.K >= SeccompDataSize || insn.K % 4 != 0:
                    throw new ArgumentException($"instruction {pc}: load at offset {insn.K} is not a word of seccomp_data");
                case JeqK or JgtK or JgeK or JsetK when pc + 1 + Math.Max(insn.Jt, insn.Jf) >= code.Length:
                    throw new ArgumentException($"instruction {pc}: jump (jt {insn.Jt}, jf {insn.Jf}) leaves the program of {code.Length}");
                case LdAbsW or JeqK or JgtK or JgeK or JsetK or RetK:
                    break;
                default:
                    throw new ArgumentException($"instruction {pc}: unknown opcode 0x{insn.Code:x}");
            }
        }

        if (code[^1].Code != RetK)
        {
            throw new ArgumentException("the last instruction is not a return: execution can fall off the end");
        }

        return code;
    }

    /// <summary>The 32-bit action the program returns for a call.</summary>
    public static uint Run(byte[] program, int nr, uint arch, params ulong[] args)
    {
        Instruction[] code = Decode(program);
        byte[] data = new byte[SeccompDataSize];
        BinaryPrimitives.WriteInt32LittleEndian(data, nr);
        BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(4), arch);
        for (int i = 0; i < args.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(16 + (8 * i)), args[i]);
        }

        uint a = 0;
        for (int pc = 0; ; pc++)
        {
            Instruction insn = code[pc];
            switch (insn.Code)
            {
                case LdAbsW:
                    a = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan((int)insn.K));
                    break;
                case RetK:
                    return insn.K;
                default:
                    bool taken = insn.Code switch
                    {
                        JeqK => a == insn.K,
                        JgtK => a > insn.K,
                        JgeK => a >= insn.K,
                        _ => (a & insn.K) != 0, // JsetK
                    };
                    pc += taken ? insn.Jt : insn.Jf;
                    break;
            }
        }
    }
}
