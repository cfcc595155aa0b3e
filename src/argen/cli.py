def main(argv=None):
    print("argen")
