echo c
echo d