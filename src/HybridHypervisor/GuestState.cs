namespace HybridHypervisor;

public enum GuestState { Stopped, Running, Paused, Broken, Crashed }
