package org.tensorflow.lite;

public class Tensor {
    private final String name;
    private final int[] shape;

    Tensor(String name, int[] shape) {
        this.name = name;
        this.shape = shape;
    }

    public String name() { return name; }
    public int[] shape() { return shape.clone(); }
}
