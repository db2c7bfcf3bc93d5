package edgekit.stub;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;

/**
 * What the runtime stand-ins (ExecuTorch, ONNX Runtime) share: the folder named by
 * -Dedgekit.stub.dir holds tensors.txt (input name, input shape, output name, output shape) and
 * output.bin (the output the real runtime computed in the test); run() saves the input to input.bin.
 */
public final class StubModel {
    private StubModel() {}

    public static Path dir() {
        return Paths.get(System.getProperty("edgekit.stub.dir"));
    }

    public static List<String> tensors() {
        try {
            return Files.readAllLines(dir().resolve("tensors.txt"));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static long[] shape(int line) {
        return Arrays.stream(tensors().get(line).split(",")).mapToLong(Long::parseLong).toArray();
    }

    /** Save the input floats, answer with the output floats. */
    public static float[] run(FloatBuffer input) {
        FloatBuffer in = input.duplicate();
        in.rewind();
        ByteBuffer bytes = ByteBuffer.allocate(in.remaining() * 4).order(ByteOrder.LITTLE_ENDIAN);
        while (in.hasRemaining()) {
            bytes.putFloat(in.get());
        }
        try {
            Files.write(dir().resolve("input.bin"), bytes.array());
            ByteBuffer out = ByteBuffer.wrap(Files.readAllBytes(dir().resolve("output.bin"))).order(ByteOrder.LITTLE_ENDIAN);
            float[] result = new float[out.remaining() / 4];
            out.asFloatBuffer().get(result);
            return result;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
